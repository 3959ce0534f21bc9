import test, { type Implementation } from 'ava';

/** True when running under CI (`CI=true`), where every capability must be present. */
export const inCi = process.env.CI === 'true' || process.env.CI === '1';

/**
 * Registers `title` as a normal test when `reason` is undefined (the capability is present).
 * Otherwise: in CI the test is registered and fails with the reason (CI must not skip);
 * elsewhere it is skipped and the reason is logged.
 */
export function testIf(reason: string | undefined, title: string, impl: Implementation<[]>): void {
  if (reason === undefined) {
    test(title, impl);
  } else if (inCi) {
    test(title, (t) => {
      t.fail(`capability missing in CI: ${reason}`);
    });
  } else {
    console.warn(`skipping "${title}": ${reason}`);
    test.skip(title, impl);
  }
}

/** Same as {@link testIf} for serial tests. */
export function testSerialIf(reason: string | undefined, title: string, impl: Implementation<[]>): void {
  if (reason === undefined) {
    test.serial(title, impl);
  } else if (inCi) {
    test.serial(title, (t) => {
      t.fail(`capability missing in CI: ${reason}`);
    });
  } else {
    console.warn(`skipping "${title}": ${reason}`);
    test.skip(title, impl);
  }
}
