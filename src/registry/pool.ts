/** Runs `work` over `items` with at most `n` in flight; after the first failure no new item starts (`onFailure` may cancel running ones) and it is rethrown. */
export async function runPool<T>(items: readonly T[], n: number, work: (item: T) => Promise<void>, onFailure?: () => void): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await work(item);
      } catch (err) {
        if (failed === undefined) {
          failed = err;
          onFailure?.();
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failed !== undefined) throw failed;
}
