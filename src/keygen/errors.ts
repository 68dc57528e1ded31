// Errors of mandos-keygen and the fleet enrollment, one class with a stable
// `code` per failure an admin or a script may act on. Messages never carry
// a password.

import { CodedError } from "../errors.js";

export type KeygenErrorCode =
  | "KEYGEN_USAGE"
  | "KEYGEN_NOT_A_DIRECTORY"
  | "KEYGEN_WOULD_OVERWRITE"
  | "KEYGEN_BAD_KEY_TYPE"
  | "KEYGEN_BAD_KEY_LENGTH"
  | "KEYGEN_BAD_EXPIRE"
  | "KEYGEN_EMPTY_NAME"
  | "KEYGEN_KEY_UNREADABLE"
  | "KEYGEN_PASSPHRASE_MISMATCH"
  | "KEYGEN_EMPTY_PASSWORD"
  | "ENROLL_DUPLICATE_NAME"
  | "ENROLL_DUPLICATE_KEY_ID"
  | "ENROLL_DUPLICATE_FINGERPRINT"
  | "ENROLL_BAD_INPUT"
  | "ENROLL_CONFIG_UNREADABLE"
  | "ENROLL_WOULD_BREAK"
  | "ENROLL_LOCKED";

export class KeygenError extends CodedError<KeygenErrorCode> {}
