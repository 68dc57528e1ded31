// A SIGHUP in the server's first moments must not kill it. Node's default
// for SIGHUP ends the process, and the listener that holds signals while
// the server starts (main.ts, serve) goes in only once its modules are
// loaded, some 0.4 s after exec: a `systemctl reload` (logrotate's) just
// after a start killed it, "Hangup" and no log line. bin/mandos loads this
// (through process-guards.ts) before anything heavy; the listener here
// only remembers that one came, and main.ts takes it over once its own
// holder is in, applying a remembered one as it applies the held ones.
// A run that is not the server (--check) lets it go: a hangup ends it.

let installed = false;
let came = false;
const remember = (): void => {
  came = true;
};

/** First thing: a SIGHUP from now on is remembered instead of ending the process. */
export function holdEarlyHangup(): void {
  if (installed) return;
  installed = true;
  process.on("SIGHUP", remember);
}

/**
 * Hands over to a holder the caller has installed already (else a SIGHUP
 * in between would have its default effect): removes the early listener
 * and says whether a SIGHUP came since holdEarlyHangup. False when it was
 * never held (main() run without bin/mandos).
 */
export function takeEarlyHangup(): boolean {
  if (!installed) return false;
  process.off("SIGHUP", remember);
  installed = false;
  const hungUp = came;
  came = false;
  return hungUp;
}
