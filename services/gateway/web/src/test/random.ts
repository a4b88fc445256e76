/** A small seeded PRNG (mulberry32) so the randomized tests are repeatable. */

export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)] as T;
  }

  word(): string {
    const letters = "abcdefghijklmnopqrstuvwxyz_";
    const length = this.int(1, 8);
    let out = "";
    for (let i = 0; i < length; i += 1) out += letters[this.int(0, letters.length - 1)];
    return this.bool(0.1) ? `${out}-x/~y` : out; // names that need pointer escaping, now and then
  }
}
