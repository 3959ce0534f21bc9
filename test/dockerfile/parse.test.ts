import test, { type ExecutionContext } from 'ava';
import { isTsbuildError, type ErrorCode, type TsbuildError } from '../../src/core/index.js';
import { parseDockerfile, parseInstructionText, type Instruction } from '../../src/dockerfile/index.js';

/** Parses `text` and returns the instructions of the last stage (FROM excluded). */
function body(text: string): readonly Instruction[] {
  const df = parseDockerfile(text, 'Dockerfile');
  return (df.stages[df.stages.length - 1] as (typeof df.stages)[number]).instructions;
}

function only<K extends Instruction['kind']>(t: ExecutionContext, text: string, kind: K): Instruction & { kind: K } {
  const list = body(`FROM alpine\n${text}`);
  t.is(list.length, 1, JSON.stringify(list));
  const ins = list[0] as Instruction;
  t.is(ins.kind, kind);
  return ins as Instruction & { kind: K };
}

function parseError(t: ExecutionContext, text: string, code: ErrorCode): TsbuildError {
  const err = t.throws(() => parseDockerfile(text, 'Dockerfile'));
  t.true(isTsbuildError(err), String(err));
  t.is((err as TsbuildError).code, code, (err as Error).message);
  return err as TsbuildError;
}

test('parseDockerfile: reports 1-based lines and the file name when instructions follow comments and blank lines', (t) => {
  const df = parseDockerfile('# comment\n\nFROM alpine AS Base\n\nRUN echo hi\n', 'build/Dockerfile.dev');
  const stage = df.stages[0];
  t.deepEqual(stage?.from.loc, { file: 'build/Dockerfile.dev', line: 3, endLine: 3 });
  t.deepEqual(stage?.instructions[0]?.loc, { file: 'build/Dockerfile.dev', line: 5, endLine: 5 });
  t.is(stage?.name, 'base');
  t.is(stage?.from.alias, 'Base');
  t.is(stage?.from.asKeyword, 'AS');
  t.deepEqual(stage?.loc, { file: 'build/Dockerfile.dev', line: 3, endLine: 5 });
});

test('parseDockerfile: puts ARGs before the first FROM into globalArgs when the file starts with ARG', (t) => {
  const df = parseDockerfile('ARG A=1 B\nARG C="x y"\nFROM alpine:$A\nARG A\n', 'Dockerfile');
  t.deepEqual(df.globalArgs.flatMap((a) => a.args), [{ name: 'A', default: '1' }, { name: 'B' }, { name: 'C', default: '"x y"' }]);
  t.is(df.stages[0]?.from.image, 'alpine:$A');
  t.is(df.stages[0]?.instructions[0]?.kind, 'ARG');
});

test('parseDockerfile: splits stages and keeps FROM --platform unexpanded when given several stages', (t) => {
  const df = parseDockerfile('FROM --platform=$BUILDPLATFORM golang AS build\nRUN go build\nfrom scratch\ncopy --from=build /a /b\n', 'Dockerfile');
  t.is(df.stages.length, 2);
  t.is(df.stages[0]?.from.platform, '$BUILDPLATFORM');
  t.is(df.stages[1]?.index, 1);
  t.is(df.stages[1]?.name, undefined);
  t.is(df.stages[1]?.from.keyword, 'from');
  const copy = df.stages[1]?.instructions[0];
  t.is(copy?.kind, 'COPY');
  t.is(copy?.kind === 'COPY' ? copy.from : '', 'build');
});

test('parseDockerfile: joins continuation lines and skips comments and empty lines inside them when a RUN spans lines', (t) => {
  const run = only(t, 'RUN apt-get update && \\\n    # install things\n\n    apt-get install -y curl \\\n    && true', 'RUN');
  t.deepEqual(run.command, { form: 'shell', command: 'apt-get update &&     apt-get install -y curl     && true' });
  t.deepEqual(run.loc, { file: 'Dockerfile', line: 2, endLine: 6 });
  t.true(run.source.startsWith('RUN apt-get update && \\\n'));
});

test('parseDockerfile: uses the backtick as escape and continuation character when # escape=` is set', (t) => {
  const df = parseDockerfile('# escape=`\nFROM mcr.microsoft.com/windows\nRUN dir c:\\ `\n  && echo done\nCOPY a\\b c:\\dest\\\n', 'Dockerfile');
  t.is(df.directives.escape, '`');
  const [run, copy] = df.stages[0]?.instructions ?? [];
  t.deepEqual(run?.kind === 'RUN' ? run.command : undefined, { form: 'shell', command: 'dir c:\\   && echo done' });
  t.is(copy?.kind === 'COPY' ? copy.dest : '', 'c:\\dest\\');
});

test('parseDockerfile: reads syntax, escape and check directives when they precede everything', (t) => {
  const df = parseDockerfile('# syntax=docker/dockerfile:1.7\n#check = skip=StageNameCasing,JSONArgsRecommended; error=true\nFROM a\n', 'Dockerfile');
  t.deepEqual(df.directives, {
    escape: '\\',
    syntax: 'docker/dockerfile:1.7',
    check: { skip: ['StageNameCasing', 'JSONArgsRecommended'], error: true },
  });
  t.deepEqual(parseDockerfile('# check=skip=all\nFROM a\n', 'D').directives.check, { skip: 'all', error: false });
});

test('parseDockerfile: treats directive-looking comments as comments when they follow an instruction or unknown directive', (t) => {
  t.is(parseDockerfile('FROM a\n# escape=`\nRUN x \\\n y\n', 'D').directives.escape, '\\');
  t.is(parseDockerfile('# foo=bar\n# escape=`\nFROM a\n', 'D').directives.escape, '\\');
  t.is(parseDockerfile('\n# escape=`\nFROM a\n', 'D').directives.escape, '\\');
});

test('parseDockerfile: parses RUN exec form, mounts, network and security when all flags are given', (t) => {
  const run = only(
    t,
    'RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1000 --mount=type=bind,source=.,target=/src,rw ' +
      '--mount=type=tmpfs,target=/tmp,size=64m --mount=type=secret,id=tok,env=TOKEN,required --mount=type=ssh ' +
      '--network=none --security=insecure ["make", "all"]',
    'RUN',
  );
  t.deepEqual(run.command, { form: 'exec', args: ['make', 'all'] });
  t.deepEqual(run.mounts, [
    { type: 'cache', target: '/root/.cache', id: 'pip', readonly: false, sharing: 'locked', mode: 0o700, uid: 1000 },
    { type: 'bind', target: '/src', source: '.', readwrite: true },
    { type: 'tmpfs', target: '/tmp', size: 64 * 1024 * 1024 },
    { type: 'secret', id: 'tok', env: 'TOKEN', required: true },
    { type: 'ssh', required: false },
  ]);
  t.is(run.network, 'none');
  t.is(run.security, 'insecure');
  t.deepEqual(only(t, 'RUN --mount=target=/x echo', 'RUN').mounts, [{ type: 'bind', target: '/x', readwrite: false }]);
});

test('parseDockerfile: keeps shell form text that starts with [ when it is a shell test, not JSON', (t) => {
  t.deepEqual(only(t, 'RUN [ -f /etc/passwd ] && echo ok', 'RUN').command, { form: 'shell', command: '[ -f /etc/passwd ] && echo ok' });
  t.deepEqual(only(t, 'RUN [ "$A" = "b" ] || exit 1', 'RUN').command, { form: 'shell', command: '[ "$A" = "b" ] || exit 1' });
});

test('parseDockerfile: parses CMD, ENTRYPOINT and SHELL in both forms', (t) => {
  t.deepEqual(only(t, 'CMD ["nginx", "-g", "daemon off;"]', 'CMD').command, { form: 'exec', args: ['nginx', '-g', 'daemon off;'] });
  t.deepEqual(only(t, 'CMD []', 'CMD').command, { form: 'exec', args: [] });
  t.deepEqual(only(t, 'ENTRYPOINT exec top -b', 'ENTRYPOINT').command, { form: 'shell', command: 'exec top -b' });
  t.deepEqual(only(t, 'SHELL ["powershell", "-command"]', 'SHELL').shell, ['powershell', '-command']);
});

test('parseDockerfile: keeps quotes and variables in ENV and LABEL values when given both forms', (t) => {
  const env = only(t, 'ENV A=1 B="two words" C=\'$x\' D=a\\ b', 'ENV');
  t.deepEqual(env.pairs, [
    { key: 'A', value: '1' }, { key: 'B', value: '"two words"' }, { key: 'C', value: "'$x'" }, { key: 'D', value: 'a\\ b' },
  ]);
  t.false(env.legacy);
  const legacy = only(t, 'ENV PATH /usr/local/bin:$PATH', 'ENV');
  t.deepEqual(legacy.pairs, [{ key: 'PATH', value: '/usr/local/bin:$PATH' }]);
  t.true(legacy.legacy);
  const label = only(t, 'LABEL "com.example.vendor"="ACME Inc" version=1.0 multi="a \\\n b"', 'LABEL');
  t.deepEqual(label.pairs, [
    { key: '"com.example.vendor"', value: '"ACME Inc"' }, { key: 'version', value: '1.0' }, { key: 'multi', value: '"a  b"' },
  ]);
  t.true(only(t, 'LABEL maintainer someone@example.com', 'LABEL').legacy === true);
});

test('parseDockerfile: parses COPY and ADD flags and JSON form when every flag is given', (t) => {
  const copy = only(t, 'COPY --from=build --chown=1000:1000 --chmod=0755 --link --parents --exclude=*.md --exclude=.git ./a ./b /dst/', 'COPY');
  t.like(copy, {
    sources: ['./a', './b'], dest: '/dst/', from: 'build', chown: '1000:1000', chmod: '0755', link: true, parents: true,
    exclude: ['*.md', '.git'], keepGitDir: false, json: false,
  });
  const add = only(t, 'ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --keep-git-dir=true --link=false ["https://example.com/a b.tgz", "/opt/"]', 'ADD');
  t.like(add, { sources: ['https://example.com/a b.tgz'], dest: '/opt/', keepGitDir: true, link: false, json: true });
  t.is(add.checksum, 'sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d');
});

test('parseDockerfile: parses the simple instructions when each appears once', (t) => {
  t.is(only(t, 'MAINTAINER Jane Doe <jane@example.com>', 'MAINTAINER').name, 'Jane Doe <jane@example.com>');
  t.deepEqual(only(t, 'EXPOSE 80 53/udp 8000-8010/tcp $PORT', 'EXPOSE').ports, ['80', '53/udp', '8000-8010/tcp', '$PORT']);
  t.deepEqual(only(t, 'VOLUME /data /logs', 'VOLUME').paths, ['/data', '/logs']);
  t.deepEqual(only(t, 'VOLUME ["/data"]', 'VOLUME').paths, ['/data']);
  t.is(only(t, 'USER app:app', 'USER').user, 'app:app');
  t.is(only(t, 'WORKDIR /my dir', 'WORKDIR').path, '/my dir');
  t.is(only(t, 'STOPSIGNAL SIGKILL', 'STOPSIGNAL').signal, 'SIGKILL');
  t.deepEqual(only(t, 'ARG V=1.0', 'ARG').args, [{ name: 'V', default: '1.0' }]);
});

test('parseDockerfile: stores HEALTHCHECK durations in nanoseconds when options are given', (t) => {
  const hc = only(t, 'HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=300ms --start-interval=2s --retries=5 CMD curl -f http://localhost/ || exit 1', 'HEALTHCHECK');
  t.deepEqual(hc.check, {
    type: 'cmd',
    command: { form: 'shell', command: 'curl -f http://localhost/ || exit 1' },
    options: { interval: 90e9, timeout: 1.5e9, startPeriod: 300e6, startInterval: 2e9, retries: 5 },
  });
  t.deepEqual(only(t, 'HEALTHCHECK none', 'HEALTHCHECK').check, { type: 'none' });
  t.deepEqual(only(t, 'HEALTHCHECK --interval=0s CMD ["true"]', 'HEALTHCHECK').check, {
    type: 'cmd', command: { form: 'exec', args: ['true'] }, options: { interval: 0 },
  });
});

test('parseDockerfile: parses an ONBUILD trigger as a typed instruction when it is allowed', (t) => {
  const ob = only(t, 'ONBUILD COPY --chown=1:1 . /app', 'ONBUILD');
  t.is(ob.triggerSource, 'COPY --chown=1:1 . /app');
  t.like(ob.trigger, { kind: 'COPY', sources: ['.'], dest: '/app', chown: '1:1' });
  const run = only(t, 'ONBUILD RUN <<EOF\necho later\nEOF', 'ONBUILD');
  t.deepEqual(run.trigger.kind === 'RUN' ? run.trigger.heredocs.map((h) => h.content) : [], ['echo later\n']);
  t.is(run.triggerSource, 'RUN <<EOF\necho later\nEOF');
  const again = parseInstructionText(run.triggerSource, { file: 'Dockerfile', line: 1 });
  t.deepEqual(again.kind === 'RUN' ? again.heredocs.map((h) => h.content) : [], ['echo later\n']);
});

test('parseDockerfile: attaches heredoc bodies and ends the instruction after the terminator when RUN uses <<EOF', (t) => {
  const df = parseDockerfile('FROM a\nRUN <<EOF\necho "$HOME"\n  # not a comment\n\nEOF\nRUN echo after\n', 'Dockerfile');
  const [run, after] = df.stages[0]?.instructions ?? [];
  t.deepEqual(run?.loc, { file: 'Dockerfile', line: 2, endLine: 6 });
  t.deepEqual(run?.kind === 'RUN' ? run.heredocs : [], [{ name: 'EOF', content: 'echo "$HOME"\n  # not a comment\n\n', expand: true, stripTabs: false }]);
  t.is(after?.loc.line, 7);
});

test('parseDockerfile: strips leading tabs, honours quoted delimiters and fds when heredocs are combined', (t) => {
  const run = only(t, "RUN 3<<'A' <<-\"B\" cat /dev/fd/3 -\nliteral $x\nA\n\t\ttabbed\n\tB", 'RUN');
  t.deepEqual(run.heredocs, [
    { name: 'A', content: 'literal $x\n', expand: false, stripTabs: false, fd: 3 },
    { name: 'B', content: 'tabbed\n', expand: false, stripTabs: true },
  ]);
  t.deepEqual(run.command, { form: 'shell', command: "3<<'A' <<-\"B\" cat /dev/fd/3 -" });
});

test('parseDockerfile: names heredoc sources by their delimiter when COPY writes files from heredocs', (t) => {
  const copy = only(t, 'COPY --chmod=755 <<one.sh <<two.sh /usr/bin/\n#!/bin/sh\nONE\none.sh\necho two\ntwo.sh', 'COPY');
  t.deepEqual(copy.sources, ['one.sh', 'two.sh']);
  t.is(copy.dest, '/usr/bin/');
  t.deepEqual(copy.heredocs.map((h) => [h.name, h.content]), [['one.sh', '#!/bin/sh\nONE\n'], ['two.sh', 'echo two\n']]);
  const add = only(t, 'ADD <<EOF /etc/motd\nhi\nEOF', 'ADD');
  t.deepEqual(add.heredocs.map((h) => h.content), ['hi\n']);
});

test('parseDockerfile: ignores << in JSON form and in non-heredoc instructions', (t) => {
  const list = body('FROM a\nRUN ["cat", "<<EOF"]\nLABEL x=<<EOF\nCMD cat <<EOF\n');
  t.deepEqual(list.map((i) => i.kind), ['RUN', 'LABEL', 'CMD']);
});

test('parseDockerfile: accepts CRLF line endings and a byte-order mark', (t) => {
  const df = parseDockerfile('\uFEFFFROM a\r\nRUN a \\\r\n  b\r\nCOPY <<EOF /x\r\nhi\r\nEOF\r\n', 'Dockerfile');
  const [run, copy] = df.stages[0]?.instructions ?? [];
  t.deepEqual(run?.kind === 'RUN' ? run.command : undefined, { form: 'shell', command: 'a   b' });
  t.deepEqual(copy?.kind === 'COPY' ? copy.heredocs[0]?.content : undefined, 'hi\n');
});

test('parseInstructionText: parses one ONBUILD trigger from an image config at the given location', (t) => {
  const ins = parseInstructionText('RUN make install', { file: 'Dockerfile', line: 4 });
  t.like(ins, { kind: 'RUN', command: { form: 'shell', command: 'make install' }, loc: { file: 'Dockerfile', line: 4 } });
  parseError(t, 'FROM a\nONBUILD ONBUILD RUN x', 'DF_BAD_ONBUILD');
});

test('parseDockerfile: suggests the closest instruction and flag when they are misspelled', (t) => {
  const e1 = parseError(t, 'FROM a\nRUM echo', 'DF_UNKNOWN_INSTRUCTION');
  t.is(e1.hint, 'did you mean RUN?');
  t.deepEqual(e1.loc, { file: 'Dockerfile', line: 2, endLine: 2 });
  const e2 = parseError(t, 'FROM a\nCOPY --chwn=1 a b', 'DF_UNKNOWN_FLAG');
  t.is(e2.hint, 'did you mean --chown?');
  const e3 = parseError(t, 'FROM a\nWORKDIR --x=1 /a', 'DF_UNKNOWN_FLAG');
  t.is(e3.hint, 'WORKDIR takes no flags');
  const e4 = parseError(t, 'FROM a\nRUN --mount=type=cahce,target=/x true', 'DF_BAD_MOUNT');
  t.regex(e4.hint ?? '', /did you mean cache\?/);
});
