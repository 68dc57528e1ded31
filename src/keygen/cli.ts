// mandos-keygen, ours: Debian's options, files and output (mandos-keygen(8)),
// with the OpenPGP work done in process. Three modes:
//   key creation (default)       writes the four key files into --dir;
//   --password / --passfile FILE prints the clients.conf section for the key in --dir;
//   --enroll                     adds many machines to clients.conf (enroll.ts).

import { spawnSync } from "node:child_process";
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync, readSync, statSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { isatty } from "node:tty";
import { enrollCommand, ENROLL_HELP, ENROLL_OPTIONS } from "./enroll.js";
import { fileSystemError, KeygenError, KeygenFileError } from "./errors.js";
import { getopt, type OptionSpec } from "./getopt.js";
import { importPickleDryRun } from "./import-pickle.js";
import { parseExpire } from "./expire.js";
import { defaultKeyDir, keyDirPaths, replaceKeyFiles } from "./key-dir.js";
import { encryptPassword, generateOpenPgpKey, openPgpFingerprint, secretLines } from "./openpgp-key.js";
import { formatSection, localSshHostKey, type SshKeyscan } from "./section.js";
import { generateTlsKey, parseTlsKeyType, tlsKeyId } from "./tls-key.js";

export const VERSION = "1.8.16";

const OPTIONS = {
  version: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
  password: { type: "boolean", short: "p" },
  passfile: { type: "string", short: "F" },
  dir: { type: "string", short: "d" },
  type: { type: "string", short: "t", default: "RSA" },
  length: { type: "string", short: "l", default: "4096" },
  subtype: { type: "string", short: "s", default: "RSA" },
  sublength: { type: "string", short: "L", default: "4096" },
  name: { type: "string", short: "n" },
  email: { type: "string", short: "e", default: "" },
  comment: { type: "string", short: "c", default: "" },
  expire: { type: "string", short: "x", default: "0" },
  "tls-keytype": { type: "string", short: "T", default: "ed25519" },
  force: { type: "boolean", short: "f" },
  "no-ssh": { type: "boolean", short: "S" },
  ...ENROLL_OPTIONS,
  "import-pickle": { type: "string" },
} as const satisfies Record<string, OptionSpec>;

// The long options of Debian's script: an abbreviation of one of them
// means what it means there, though ours has more (getopt.ts).
const DEBIAN_LONG_OPTIONS: ReadonlySet<string> = new Set([
  "version", "help", "password", "passfile", "dir", "type", "length", "subtype", "sublength",
  "name", "email", "comment", "expire", "tls-keytype", "force", "no-ssh",
]);

function help(program: string): string {
  return `Usage: ${program} [ -v | --version ]
       ${program} [ -h | --help ]
   Key creation:
       ${program} [ OPTIONS ]
   Encrypted password creation:
       ${program} { -p | --password } [ --name NAME ] [ --dir DIR]
       ${program} { -F | --passfile } FILE [ --name NAME ] [ --dir DIR]
   Enrolling many machines into clients.conf:
       ${program} --enroll [ --clients-conf FILE ] [ --dry-run ]
           [ --manifest FILE ] [ DIR... ]
       ${program} --import-pickle FILE [ --clients-conf FILE ]

Key creation options:
  -v, --version         Show program's version number and exit
  -h, --help            Show this help message and exit
  -d DIR, --dir DIR     Target directory for key files
  -t TYPE, --type TYPE  OpenPGP key type.  Default is RSA.
  -l BITS, --length BITS
                        OpenPGP key length in bits.  Default is 4096.
  -s TYPE, --subtype TYPE
                        OpenPGP subkey type.  Default is RSA.
  -L BITS, --sublength BITS
                        OpenPGP subkey length in bits.  Default 4096.
  -n NAME, --name NAME  Name of key.  Default is the FQDN.
  -e ADDRESS, --email ADDRESS
                        Email address of OpenPGP key.  Default empty.
  -c TEXT, --comment TEXT
                        Comment field for OpenPGP key.  Default empty.
  -x TIME, --expire TIME
                        OpenPGP key expire time.  Default is none.
                        See gpg(1) for syntax.
  -T TYPE, --tls-keytype TYPE
                        TLS key type.  Default is ed25519.
  -f, --force           Force overwriting old key files.

Password creation options:
  -p, --password        Create an encrypted password using the key in
                        the key directory.  All options other than
                        --dir and --name are ignored.
  -F FILE, --passfile FILE
                        Encrypt a password from FILE using the key in
                        the key directory.  All options other than
                        --dir and --name are ignored.
  -S, --no-ssh          Don't get SSH key or set "checker" option.
${ENROLL_HELP}
Switching from the Python server:
  --import-pickle FILE  Show what our server would import from the Python
                        server's clients.pickle at start-up, given
                        --clients-conf; change nothing.
`;
}

export interface KeygenIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Reads one line of a password (prompted, not echoed), its bytes as given; null at end of input. */
  readonly readPassword: (prompt: string) => Buffer | null;
  /** Whether a passphrase mismatch asks again: standard input is a terminal (Debian's `tty --quiet`). */
  readonly interactive?: boolean;
  readonly sshKeyscan?: SshKeyscan;
  readonly now?: () => Date;
}

/** Runs mandos-keygen; resolves with the exit code. */
export async function keygenMain(argv: readonly string[], io: KeygenIo = processIo(), program = "mandos-keygen"): Promise<number> {
  try {
    return await run(argv, io, program);
  } catch (error) {
    const shown = fileSystemError(error) ?? error;
    if (shown instanceof KeygenFileError) {
      io.stderr(`${program}: ${shown.message}\n`);
      return 1;
    }
    if (shown instanceof KeygenError) {
      io.stderr(`${shown.message}\n`);
      return 1;
    }
    // An admin gets one line, as from Debian's script, never a stack: an
    // OpenPGP.js failure on a key it cannot use is not worth more.
    const reason = error instanceof Error ? error.message : String(error);
    io.stderr(`${program}: ${reason.split("\n")[0]}\n`);
    return 1;
  }
}

async function run(argv: readonly string[], io: KeygenIo, program: string): Promise<number> {
  const parsed = getopt(argv, OPTIONS, DEBIAN_LONG_OPTIONS);
  if (parsed.errors.length > 0) throw new KeygenError("KEYGEN_USAGE", parsed.errors.map((e) => `${program}: ${e}`).join("\n"));
  const o = parsed.values;
  if (o.version) {
    io.stdout(`${program} ${VERSION}\n`);
    return 0;
  }
  if (o.help) {
    io.stdout(help(program));
    return 0;
  }
  if (o.enroll) return enrollCommand(o, parsed.positionals, io);
  if (o["import-pickle"] !== undefined) return importPickleDryRun(o["import-pickle"], o["clients-conf"] ?? "/etc/mandos/clients.conf", io.stdout);
  if (parsed.positionals.length > 0) throw new KeygenError("KEYGEN_USAGE", `Unknown arguments: '${parsed.positionals.join(" ")}'`);

  const dir = o.dir ?? defaultKeyDir();
  checkDirectory(dir, o.password || o.passfile !== undefined ? constants.R_OK : constants.R_OK | constants.W_OK);
  const name = o.name ?? fqdn();
  if (o.password || o.passfile !== undefined) {
    const password = o.passfile !== undefined ? readPassfile(o.passfile) : interactivePassword(io);
    io.stdout(await passwordSection(dir, name, password, o["no-ssh"] ? null : (io.sshKeyscan ?? undefined)));
    return 0;
  }
  await createKeys(dir, {
    type: o.type, length: o.length, subtype: o.subtype, sublength: o.sublength, name,
    email: o.email, comment: o.comment, expire: o.expire, tlsKeyType: o["tls-keytype"], force: o.force ?? false,
    now: io.now?.() ?? new Date(), notice: (line) => io.stderr(`${program}: ${line}\n`),
  });
  return 0;
}

function checkDirectory(dir: string, mode: number): void {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new KeygenError("KEYGEN_NOT_A_DIRECTORY", `${dir} not a directory`);
  try {
    accessSync(dir, mode);
  } catch {
    throw new KeygenError("KEYGEN_NOT_A_DIRECTORY", `Directory ${dir} not ${mode & constants.W_OK ? "writeable" : "readable"}`);
  }
}

/** `hostname --fqdn`, as Debian's script names a key by default. */
function fqdn(): string {
  const r = spawnSync("hostname", ["--fqdn"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const name = r.status === 0 ? r.stdout.trim() : "";
  return name !== "" ? name : hostname();
}

export interface CreateKeysOptions {
  readonly type: string;
  readonly length: string;
  readonly subtype: string;
  readonly sublength: string;
  readonly name: string;
  readonly email: string;
  readonly comment: string;
  readonly expire: string;
  readonly tlsKeyType: string;
  readonly force: boolean;
  readonly now: Date;
  /** Told gpg's notices (a key size changed), one line each. */
  readonly notice?: (line: string) => void;
}

/** Key creation: the TLS key pair and the OpenPGP key pair, into `dir`. */
export async function createKeys(dir: string, o: CreateKeysOptions): Promise<void> {
  if (o.type === "") throw new KeygenError("KEYGEN_BAD_KEY_TYPE", "Empty key type");
  if (o.name === "") throw new KeygenError("KEYGEN_EMPTY_NAME", "Empty key name");
  const length = Number(o.length);
  if (o.length === "" || !Number.isInteger(length) || length < 512) throw new KeygenError("KEYGEN_BAD_KEY_LENGTH", "Invalid key length");
  const expireSeconds = parseExpire(o.expire, o.now);
  const tlsType = parseTlsKeyType(o.tlsKeyType);
  const paths = keyDirPaths(dir);
  if (!o.force && Object.values(paths).some((p) => existsSync(p))) {
    throw new KeygenError("KEYGEN_WOULD_OVERWRITE", "Refusing to overwrite old key files; use --force");
  }
  // Both pairs are made before any file is replaced, so a bad option
  // (caught by the OpenPGP step) leaves the old files alone.
  const tls = generateTlsKey(tlsType);
  const pgp = await generateOpenPgpKey({
    type: o.type, length, subtype: o.subtype, sublength: Number(o.sublength),
    name: o.name, email: o.email, comment: o.comment, expireSeconds, date: o.now,
    ...(o.notice ? { notice: o.notice } : {}),
  });
  // All four or none: a full disk leaves the old set whole (key-dir.ts).
  replaceKeyFiles([
    { path: paths.tlsPrivateKey, contents: tls.privateKeyPem },
    { path: paths.tlsPublicKey, contents: tls.publicKeyPem },
    { path: paths.secretKey, contents: pgp.secretKey },
    { path: paths.publicKey, contents: pgp.publicKey },
  ]);
}


/**
 * The clients.conf section for the key in `dir`: fingerprint from
 * pubkey.txt, key ID from tls-pubkey.pem (when there is one), the password
 * encrypted to the key and signed with seckey.txt (when there is one).
 * `sshKeyscan` null leaves out the checker (--no-ssh).
 */
export async function passwordSection(dir: string, name: string, password: Uint8Array, sshKeyscan: SshKeyscan | null | undefined): Promise<string> {
  const paths = keyDirPaths(dir);
  const publicKey = readKeyFile(paths.publicKey);
  let secretKey: string | null = null;
  try {
    secretKey = readFileSync(paths.secretKey, "utf8");
  } catch {
    // Encrypt without signing: mandos-client does not check a signature.
  }
  let tlsPublicKey: string | null = null;
  try {
    tlsPublicKey = readFileSync(paths.tlsPublicKey, "utf8");
  } catch {
    // An OpenPGP-only client (Mandos before 1.8): no key_id line.
  }
  const ssh = sshKeyscan === null ? null : localSshHostKey(sshKeyscan);
  return formatSection({
    name,
    keyId: tlsPublicKey === null ? "" : tlsKeyId(tlsPublicKey, paths.tlsPublicKey),
    fingerprint: await openPgpFingerprint(publicKey, paths.publicKey),
    secret: secretLines(await encryptPassword(password, publicKey, secretKey)),
    ssh,
  });
}

/** The password file's bytes, unstripped; `-` is standard input, as for Debian's `cat -- "$PASSFILE"`. */
function readPassfile(path: string): Buffer {
  try {
    return readFileSync(path === "-" ? 0 : path);
  } catch (error) {
    throw fileSystemError(error, path) ?? error;
  }
}

function readKeyFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw fileSystemError(error, path) ?? error;
  }
}

/**
 * Asks twice, as Debian's script does; a mismatch asks again on a terminal
 * and fails otherwise. The bytes are kept as typed (a Latin-1 password is
 * no UTF-8), less the blanks `read -r` strips.
 */
function interactivePassword(io: KeygenIo): Buffer {
  for (;;) {
    const first = io.readPassword("Enter passphrase: ");
    const second = first === null ? null : io.readPassword("Repeat passphrase: ");
    if (first === null || second === null) throw new KeygenError("KEYGEN_EMPTY_PASSWORD", "No passphrase given");
    const password = stripBlanks(first);
    if (password.equals(stripBlanks(second))) return password;
    if (io.interactive !== true) throw new KeygenError("KEYGEN_PASSPHRASE_MISMATCH", "Passphrase mismatch");
    io.stderr("Passphrase mismatch\n");
  }
}

/**
 * The line less leading and trailing spaces and tabs: what dash's `read -r`
 * in Debian's script leaves with the default IFS (newline ends the line;
 * backslashes, carriage returns and inner blanks stay).
 */
export function stripBlanks(line: Buffer): Buffer {
  const blank = (b: number | undefined): boolean => b === 0x20 || b === 0x09;
  let start = 0;
  let end = line.length;
  while (start < end && blank(line[start])) start++;
  while (end > start && blank(line[end - 1])) end--;
  return line.subarray(start, end);
}

function processIo(): KeygenIo {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    readPassword: readLineFromStdin,
    interactive: isatty(0),
  };
}

/**
 * One line from standard input, as Debian's script reads it: without echo
 * when standard input is a terminal (`stty -echo`), the prompt written to
 * the controlling terminal (`>/dev/tty`, so that it shows with stderr
 * redirected, and with standard input from a pipe), none if there is no
 * terminal.
 */
function readLineFromStdin(prompt: string): Buffer | null {
  const tty = isatty(0);
  if (tty) spawnSync("stty", ["-echo"], { stdio: ["inherit", "ignore", "ignore"] });
  promptOnTerminal(prompt);
  try {
    const bytes: number[] = [];
    const one = Buffer.alloc(1);
    const fd = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, one, 0, 1, null);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EAGAIN") continue;
        throw error;
      }
      if (n === 0) return bytes.length === 0 ? null : Buffer.from(bytes);
      if (one[0] === 0x0a) return Buffer.from(bytes);
      bytes.push(one[0]!);
    }
  } finally {
    if (tty) {
      spawnSync("stty", ["echo"], { stdio: ["inherit", "ignore", "ignore"] });
      process.stderr.write("\n");
    }
  }
}

function promptOnTerminal(prompt: string): void {
  let fd: number;
  try {
    fd = openSync("/dev/tty", "w");
  } catch {
    return; // no controlling terminal: nobody to prompt
  }
  try {
    writeSync(fd, prompt);
  } finally {
    closeSync(fd);
  }
}
