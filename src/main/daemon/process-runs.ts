// Whether a process runs, by its pid: for files and locks a process left
// behind (a state save's temporary file, an enrollment's lock), which are
// stale once it is gone.

/** Whether process `pid` runs; one of another user's (EPERM) counts as running. */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
