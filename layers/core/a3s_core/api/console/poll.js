// Refresh on a modest interval while the tab is visible; a hidden tab makes no requests.
const pollers = new Set();

export class Poller {
  constructor(intervalMs, tick) {
    this.intervalMs = intervalMs;
    this.tick = tick; // async (signal) => void; may wait itself (a long poll)
    this.timer = null;
    this.controller = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    pollers.add(this);
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    pollers.delete(this);
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }

  async run() {
    clearTimeout(this.timer);
    if (this.stopped || document.hidden || this.controller) return;
    this.controller = new AbortController();
    try {
      await this.tick(this.controller.signal);
    } catch (err) {
      if (err.name !== "AbortError") reportError(err);
    } finally {
      this.controller = null;
    }
    // One tick at a time: the next is scheduled only once this one has answered.
    if (!this.stopped && !document.hidden) this.timer = setTimeout(() => this.run(), this.intervalMs);
  }
}

let reportError = (err) => console.error(err);
export function onError(fn) {
  reportError = fn;
}

document.addEventListener("visibilitychange", () => {
  for (const p of pollers) {
    if (document.hidden) {
      clearTimeout(p.timer);
      if (p.controller) p.controller.abort();
    } else {
      p.run();
    }
  }
});
