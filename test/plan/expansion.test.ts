import test from 'ava';
import { expandsVariables, type InstructionKind } from '../../src/dockerfile/index.js';
import { graphOf } from './plan-helper.js';

/** One instruction per kind using `$V` (V=val); `probe` says whether the planned result shows it expanded. */
const CASES: readonly { kind: InstructionKind; line: string; expanded: (g: ReturnType<typeof graphOf>) => boolean }[] = [
  { kind: 'RUN', line: 'RUN echo $V', expanded: (g) => JSON.stringify(g.vertices.at(-1)?.op).includes('echo val') },
  { kind: 'CMD', line: 'CMD echo $V', expanded: (g) => JSON.stringify(g.image.config?.Cmd).includes('val') },
  { kind: 'ENTRYPOINT', line: 'ENTRYPOINT ["$V"]', expanded: (g) => JSON.stringify(g.image.config?.Entrypoint).includes('val') },
  { kind: 'HEALTHCHECK', line: 'HEALTHCHECK CMD echo $V', expanded: (g) => JSON.stringify(g.image.config?.Healthcheck).includes('val') },
  { kind: 'SHELL', line: 'SHELL ["$V", "-c"]', expanded: (g) => JSON.stringify(g.image.config?.Shell).includes('val') },
  { kind: 'MAINTAINER', line: 'MAINTAINER $V', expanded: (g) => g.image.author === 'val' },
  { kind: 'ENV', line: 'ENV E=$V', expanded: (g) => g.image.config?.Env?.includes('E=val') === true },
  { kind: 'LABEL', line: 'LABEL l=$V', expanded: (g) => g.image.config?.Labels?.l === 'val' },
  { kind: 'USER', line: 'USER $V', expanded: (g) => g.image.config?.User === 'val' },
  { kind: 'WORKDIR', line: 'WORKDIR /$V', expanded: (g) => g.image.config?.WorkingDir === '/val' },
  { kind: 'VOLUME', line: 'VOLUME /$V', expanded: (g) => Object.keys(g.image.config?.Volumes ?? {}).includes('/val') },
  { kind: 'STOPSIGNAL', line: 'STOPSIGNAL SIG$V', expanded: (g) => g.image.config?.StopSignal === 'SIGval' },
  { kind: 'EXPOSE', line: 'EXPOSE ${V:+81}', expanded: (g) => Object.keys(g.image.config?.ExposedPorts ?? {}).includes('81/tcp') },
  { kind: 'COPY', line: 'COPY $V /$V', expanded: (g) => JSON.stringify(g.vertices.at(-1)?.op).includes('"sources":["val"]') },
  { kind: 'ADD', line: 'ADD $V /$V', expanded: (g) => JSON.stringify(g.vertices.at(-1)?.op).includes('"dest":"/val"') },
  { kind: 'ARG', line: 'ARG W=$V\nENV E=$W', expanded: (g) => g.image.config?.Env?.includes('E=val') === true },
  { kind: 'ONBUILD', line: 'ONBUILD RUN $V', expanded: (g) => g.image.config?.OnBuild?.[0] === 'RUN $V' },
];

for (const c of CASES) {
  test(`expansion: ${c.kind} ${expandsVariables(c.kind) ? 'expands' : 'keeps'} variables as the reference says`, (t) => {
    const g = graphOf(`FROM alpine\nARG V=val\n${c.line}\n`);
    // ONBUILD stores its trigger verbatim; the trigger is expanded when it runs in the child (onbuild.test.ts).
    t.is(c.expanded(g), c.kind === 'ONBUILD' ? true : expandsVariables(c.kind), c.line);
  });
}

test('expansion: words without $, quotes or escape characters come back unchanged from the lexer (the planner skips it for them)', async (t) => {
  const { expandWord } = await import('../../src/dockerfile/index.js');
  const words = ['abc', 'a b  c', '/path/to/x', 'k=v', '  lead', 'trail ', 'tab\tx', 'ü€', 'a{b}c', '#x', '~x', '%', '', '\n', '*.md', 'a,b;c'];
  for (const w of words) {
    for (const escape of ['\\', '`'] as const) t.is(expandWord(w, () => 'SET', { escape }).value, w, JSON.stringify(w));
  }
});
