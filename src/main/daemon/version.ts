// The server's version, and the reference release whose behaviour it follows.
export const VERSION = "0.1.0";
export const REFERENCE_VERSION = "1.8.16";
