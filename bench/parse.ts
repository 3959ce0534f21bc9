/**
 * `npm run bench -- parse [--runs=N]`: parse + plan of a generated Dockerfile of 5,000
 * instructions over 50 stages (every stage builds FROM or copies from the previous one, so the
 * last stage needs them all). Prints median/min/max of parse+plan and of each part. Target: < 300 ms.
 */
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseDockerfile } from '../src/dockerfile/index.js';
import { planBuild } from '../src/plan/index.js';

/** Generates the benchmark Dockerfile: `stages` stages, `total` instructions in all (FROM included). */
export function generateDockerfile(stages = 50, total = 5000): string {
  const perStage = Math.floor((total - 2) / stages);
  const lines: string[] = ['# syntax=docker/dockerfile:1', 'ARG BASE=alpine:3.19', 'ARG VERSION=1.0.0'];
  let count = 2; // the two global ARGs
  for (let s = 0; s < stages; s++) {
    const from = s === 0 ? 'FROM ${BASE} AS stage0' : s % 2 === 0 ? `FROM stage${s - 1} AS stage${s}` : `FROM \${BASE} AS stage${s}`;
    lines.push(from);
    count++;
    for (let i = 1; i < perStage; i++) {
      const n = `${s}_${i}`;
      switch (i % 10) {
        case 1: lines.push(`ARG VERSION OPT_${n}=value-${n}`); break;
        case 2: lines.push(`ENV VAR_${n}="\${VERSION}-${n}" PATH=/opt/${n}/bin:$PATH`); break;
        case 3: lines.push(`RUN --mount=type=cache,target=/root/.cache/${n} \\\n    echo "step ${n}" && \\\n    make -C /src/${n} VERSION=$VERSION`); break;
        case 4: lines.push(`WORKDIR /work/${n}`); break;
        case 5: lines.push(s > 0 && s % 2 === 1 ? `COPY --from=stage${s - 1} /work /prev/${n}` : `COPY --chown=1000:1000 src/${n} ./dst/`); break;
        case 6: lines.push(`LABEL "org.example.step${n}"="\${OPT_${s}_1:-default}"`); break;
        case 7: lines.push(`RUN ["/bin/sh", "-c", "echo exec ${n}"]`); break;
        case 8: lines.push(`EXPOSE ${8000 + i}/tcp`); break;
        case 9: lines.push(`RUN <<EOF\necho heredoc ${n}\nEOF`); break;
        default: lines.push(`USER ${1000 + i}`); break;
      }
      count++;
    }
  }
  while (count < total) {
    lines.push(`RUN echo pad ${count}`);
    count++;
  }
  return `${lines.join('\n')}\n`;
}

function stats(xs: number[]): { median: number; min: number; max: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

function fmt(label: string, xs: number[]): string {
  const s = stats(xs);
  return `${label.padEnd(12)} median ${s.median.toFixed(1).padStart(7)} ms   min ${s.min.toFixed(1).padStart(7)} ms   max ${s.max.toFixed(1).padStart(7)} ms`;
}

/** Runs the benchmark and prints the figures. */
export async function run(args: string[]): Promise<void> {
  const runsArg = args.find((a) => a.startsWith('--runs='));
  const runs = runsArg === undefined ? 10 : Math.max(1, Number(runsArg.slice('--runs='.length)) || 10);
  const text = generateDockerfile();
  const options = {
    buildArgs: new Map([['VERSION', '2.0.0']]),
    buildPlatform: { os: 'linux', architecture: 'amd64' },
    targetPlatform: { os: 'linux', architecture: 'amd64' },
    baseImages: new Map(),
  };
  // One warm-up run (JIT), not counted.
  planBuild(parseDockerfile(text, 'Dockerfile'), options);
  const parse: number[] = [];
  const plan: number[] = [];
  const total: number[] = [];
  const cpu: number[] = [];
  let vertices = 0;
  let stageCount = 0;
  let instructions = 0;
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const df = parseDockerfile(text, 'Dockerfile');
    const t1 = performance.now();
    const { graph } = planBuild(df, options);
    const t2 = performance.now();
    const c1 = process.cpuUsage(c0);
    cpu.push((c1.user + c1.system) / 1000);
    parse.push(t1 - t0);
    plan.push(t2 - t1);
    total.push(t2 - t0);
    vertices = graph.vertices.length;
    stageCount = graph.stages.length;
    instructions = df.globalArgs.length + df.stages.reduce((n, s) => n + 1 + s.instructions.length, 0);
  }
  process.stdout.write(`Dockerfile: ${text.length} bytes, ${text.split('\n').length} lines, ${instructions} instructions, ${stageCount} stages; graph: ${vertices} vertices; ${runs} runs\n`);
  process.stdout.write(`${fmt('parse+plan', total)}\n${fmt('parse', parse)}\n${fmt('plan', plan)}\n${fmt('cpu time', cpu)}   (user+system of parse+plan)\n`);
  const load = loadavg()[0] ?? 0;
  if (load > availableParallelism()) process.stdout.write(`note: load average ${load.toFixed(1)} on ${availableParallelism()} CPUs; wall times are inflated\n`);
  const median = stats(total).median;
  process.stdout.write(`target < 300 ms: ${median < 300 ? 'met' : 'NOT met'}\n`);
}
