import test from 'ava';
import { isTsbuildError, type ErrorCode } from '../../src/core/index.js';
import { namesOf, parseBuildOutput, parseBuildOutputs, splitOutputFields, writesToStdout } from '../../src/cli/build-output.js';

const NO = { push: false, tags: [] as string[] };

function fails(t: import('ava').ExecutionContext, fn: () => unknown, code: ErrorCode, message: RegExp): void {
  const err = t.throws(fn);
  t.true(isTsbuildError(err, code), String(err));
  t.regex((err as Error).message, message);
  t.is((err as { exitCode?: number }).exitCode, 125);
}

test('parseBuildOutput: reads each type with its attributes', (t) => {
  t.deepEqual(parseBuildOutput('type=oci,dest=out.tar'), { type: 'oci', dest: 'out.tar', names: [] });
  t.deepEqual(parseBuildOutput('type=docker,dest=-,name=app:1'), { type: 'docker', dest: '-', names: ['docker.io/library/app:1'] });
  t.deepEqual(parseBuildOutput('type=tar,dest=rootfs.tar'), { type: 'tar', dest: 'rootfs.tar' });
  t.deepEqual(parseBuildOutput('type=local,dest=out'), { type: 'local', dest: 'out' });
  t.deepEqual(parseBuildOutput('type=image'), { type: 'image', names: [], push: false });
  t.deepEqual(parseBuildOutput('type=image,name=localhost:5000/a/b:1,push=true'), { type: 'image', names: ['localhost:5000/a/b:1'], push: true });
  t.deepEqual(parseBuildOutput('type=registry,name=r.example/x'), { type: 'image', names: ['r.example/x:latest'], push: true });
});

test('parseBuildOutput: takes the shorthands DIR (local) and - (tar on stdout)', (t) => {
  t.deepEqual(parseBuildOutput('out/dir'), { type: 'local', dest: 'out/dir' });
  t.deepEqual(parseBuildOutput('-'), { type: 'tar', dest: '-' });
});

test('parseBuildOutput: reads several names in a quoted CSV field', (t) => {
  t.deepEqual(splitOutputFields('type=image,"name=a:1,b:2",push=true'), ['type=image', 'name=a:1,b:2', 'push=true']);
  t.deepEqual(parseBuildOutput('type=image,"name=a:1,b:2"'), { type: 'image', names: ['docker.io/library/a:1', 'docker.io/library/b:2'], push: false });
  t.deepEqual(splitOutputFields('type=local,dest="a ""q"" dir"'), ['type=local', 'dest=a "q" dir']);
});

test('parseBuildOutput: fails with CLI_BAD_VALUE when the spec is malformed', (t) => {
  fails(t, () => parseBuildOutput(''), 'CLI_BAD_VALUE', /--output needs a value/);
  fails(t, () => parseBuildOutput('dest=x'), 'CLI_BAD_VALUE', /type is missing/);
  fails(t, () => parseBuildOutput('type=zip,dest=x'), 'CLI_BAD_VALUE', /unknown type "zip"/);
  fails(t, () => parseBuildOutput('type=oci'), 'CLI_BAD_VALUE', /type=oci needs dest=FILE/);
  fails(t, () => parseBuildOutput('type=local,dest='), 'CLI_BAD_VALUE', /type=local needs dest=DIR/);
  fails(t, () => parseBuildOutput('type=local,dest=-'), 'CLI_BAD_VALUE', /type=local writes a directory, not stdout/);
  fails(t, () => parseBuildOutput('type=tar,dest=x,name=a'), 'CLI_BAD_VALUE', /type=tar does not take "name"/);
  fails(t, () => parseBuildOutput('type=oci,dest=a,dest=b'), 'CLI_BAD_VALUE', /dest given twice/);
  fails(t, () => parseBuildOutput('type=image,push=maybe'), 'CLI_BAD_VALUE', /push takes true or false, not "maybe"/);
  fails(t, () => parseBuildOutput('type=image,name=UPPER:1'), 'CLI_BAD_VALUE', /bad image name "UPPER:1"/);
  fails(t, () => parseBuildOutput('type=registry,push=false'), 'CLI_BAD_VALUE', /type=registry always pushes/);
  fails(t, () => parseBuildOutput('type=oci,dest="x'), 'CLI_BAD_VALUE', /unterminated quote/);
  fails(t, () => parseBuildOutput('type=oci,=x'), 'CLI_BAD_VALUE', /expected KEY=VALUE/);
});

test('parseBuildOutputs: folds --push into the image output or adds one', (t) => {
  t.deepEqual(parseBuildOutputs([], { push: true, tags: ['docker.io/library/a:1'] }), [{ type: 'image', names: [], push: true }]);
  t.deepEqual(parseBuildOutputs(['type=image,name=b:2', 'type=tar,dest=x'], { push: true, tags: [] }), [
    { type: 'image', names: ['docker.io/library/b:2'], push: true },
    { type: 'tar', dest: 'x' },
  ]);
  t.deepEqual(parseBuildOutputs(['out', 'type=oci,dest=o.tar'], NO), [{ type: 'local', dest: 'out' }, { type: 'oci', dest: 'o.tar', names: [] }]);
});

test('parseBuildOutputs: fails before the build when a push has no name or two outputs use stdout', (t) => {
  fails(t, () => parseBuildOutputs([], { push: true, tags: [] }), 'CLI_MISSING_ARGUMENT', /--push needs a name to push to/);
  fails(t, () => parseBuildOutputs(['type=image,push=true'], NO), 'CLI_MISSING_ARGUMENT', /--output type=image,push=true needs a name to push to/);
  fails(t, () => parseBuildOutputs(['-', 'type=oci,dest=-'], NO), 'CLI_BAD_VALUE', /only one --output can write to stdout/);
});

test('writesToStdout and namesOf: stdout outputs and the names each output uses', (t) => {
  t.true(writesToStdout([{ type: 'docker', dest: '-', names: [] }]));
  t.false(writesToStdout([{ type: 'local', dest: '-x' }, { type: 'image', names: [], push: false }]));
  const tags = ['docker.io/library/t:1'];
  t.deepEqual(namesOf({ type: 'image', names: ['docker.io/library/n:1'], push: true }, tags), ['docker.io/library/t:1', 'docker.io/library/n:1']);
  t.deepEqual(namesOf({ type: 'oci', dest: 'x', names: [] }, tags), tags);
  t.deepEqual(namesOf({ type: 'docker', dest: 'x', names: ['docker.io/library/n:1'] }, tags), ['docker.io/library/n:1']);
});
