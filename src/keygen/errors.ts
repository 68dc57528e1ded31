// Errors of mandos-keygen and the fleet enrollment, one class with a stable
// `code` per failure an admin or a script may act on. Messages never carry
// a password.

import { CodedError } from "../errors.js";
import { reasonInWords } from "../main/config/os-error.js";

export type KeygenErrorCode =
  | "KEYGEN_USAGE"
  | "KEYGEN_NOT_A_DIRECTORY"
  | "KEYGEN_WOULD_OVERWRITE"
  | "KEYGEN_BAD_KEY_TYPE"
  | "KEYGEN_BAD_KEY_LENGTH"
  | "KEYGEN_BAD_EXPIRE"
  | "KEYGEN_EMPTY_NAME"
  | "KEYGEN_KEY_UNREADABLE"
  | "KEYGEN_KEY_UNUSABLE"
  | "KEYGEN_PASSPHRASE_MISMATCH"
  | "KEYGEN_EMPTY_PASSWORD"
  | "ENROLL_DUPLICATE_NAME"
  | "ENROLL_DUPLICATE_KEY_ID"
  | "ENROLL_DUPLICATE_FINGERPRINT"
  | "ENROLL_BAD_INPUT"
  | "ENROLL_CONFIG_UNREADABLE"
  | "ENROLL_WOULD_BREAK"
  | "ENROLL_LOCKED"
  | "KEYGEN_FILE_ERROR";

export class KeygenError extends CodedError<KeygenErrorCode> {}

/**
 * A file that could not be read or written, or is not what it should be:
 * shown as `mandos-keygen: FILE: REASON`, the shape of the `cat: FILE:
 * REASON` that Debian's script lets through for a bad --passfile.
 */
export class KeygenFileError extends KeygenError {
  readonly path: string;
  readonly reason: string;

  constructor(code: KeygenErrorCode, path: string, reason: string, options?: ErrorOptions) {
    super(code, `${path}: ${reason}`, options);
    this.path = path;
    this.reason = reason;
  }
}

/**
 * A file-system error (one with a system call and an errno code) as a
 * KeygenFileError naming its file, or `path` when it names none (read(2)'s
 * EISDIR); null for anything else, so that a programming error is not
 * blamed on a file.
 */
export function fileSystemError(error: unknown, path?: string): KeygenFileError | null {
  if (!(error instanceof Error)) return null;
  const { code, syscall, path: named } = error as NodeJS.ErrnoException;
  const file = named ?? path;
  if (typeof code !== "string" || typeof syscall !== "string" || file === undefined) return null;
  return new KeygenFileError("KEYGEN_FILE_ERROR", file, reasonInWords(error), { cause: error });
}
