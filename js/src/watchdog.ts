// Notices a kernel that stopped answering (restarted, shut down, or stuck): while the widget
// waits for the kernel, a stretch of silence sends a ping; a ping left unanswered means the
// kernel is gone, and the widget says to re-run the cell instead of "running…" forever.

export const QUIET_MS = 10_000;
export const PING_WAIT_MS = 10_000;

export const LOST_MESSAGE =
  "The kernel does not answer: it was restarted or is busy running another cell. If it was restarted, re-run the cell that made this widget.";

export class KernelWatch {
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** True after `lost` fired, until the kernel is heard from again. */
  silent = false;

  constructor(
    private readonly ping: () => void,
    private readonly lost: () => void,
    private readonly found: () => void,
    private readonly quietMs = QUIET_MS,
    private readonly pingWaitMs = PING_WAIT_MS,
  ) {}

  /** A request went out: expect to hear from the kernel. */
  sent(): void {
    if (this.timer === null) this.arm(this.quietMs, () => this.probe());
  }

  /** The kernel sent something; `waiting` says whether the widget still expects more. */
  heard(waiting: boolean): void {
    this.stop();
    if (this.silent) {
      this.silent = false;
      this.found();
    }
    if (waiting) this.arm(this.quietMs, () => this.probe());
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private probe(): void {
    this.ping();
    this.arm(this.pingWaitMs, () => {
      this.timer = null;
      this.silent = true;
      this.lost();
    });
  }

  private arm(ms: number, fn: () => void): void {
    this.stop();
    this.timer = setTimeout(fn, ms);
  }
}
