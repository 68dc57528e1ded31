// Where python/repr.ts was: serve/version-line.ts and zeroconf/announce.ts
// still import it from here. Remove once they import ../python/repr.js.

export { printableAscii, pyAscii, pyRepr, pyTextLine } from "../python/repr.js";
