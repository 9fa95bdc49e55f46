/**
 * Attempts per peer address in a window. Kept in memory only and dropped when the window passes:
 * addresses are personal data and must never reach storage.
 */
export class AttemptLimiter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  allow(peer: string, now = Date.now()): boolean {
    if (this.windows.size > 10_000) for (const [k, w] of this.windows) if (w.resetAt <= now) this.windows.delete(k);
    const w = this.windows.get(peer);
    if (!w || w.resetAt <= now) {
      this.windows.set(peer, { count: 1, resetAt: now + this.windowMs });
      return true;
    }
    w.count++;
    return w.count <= this.limit;
  }
}
