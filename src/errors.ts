// The one shape of an error that a caller may act on, in every layer: a
// stable `code` string (tests and logs match on it, never on the message)
// and the class's own `name`. Each layer lists its codes next to its
// classes (src/tls/errors.ts, src/main/config/errors.ts,
// src/main/daemon/errors.ts, ...).

export abstract class CodedError<C extends string> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
