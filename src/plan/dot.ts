import type { BuildGraph } from './graph.js';

function quote(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

/** Renders a graph as Graphviz DOT: one cluster per stage, image sources outside, edges input -> consumer. */
export function graphToDot(graph: BuildGraph): string {
  const lines: string[] = ['digraph build {', '  rankdir=TB;', '  node [shape=box, fontname="monospace", fontsize=10];'];
  const byId = new Map(graph.vertices.map((v) => [v.id, v]));
  for (const v of graph.vertices) {
    if (v.stage === null) lines.push(`  ${quote(v.id)} [label=${quote(v.name)}, shape=cylinder];`);
  }
  for (const s of graph.stages) {
    const title = s.name === undefined ? `stage ${s.index}` : `stage ${s.index}: ${s.name}`;
    lines.push(`  subgraph ${quote(`cluster_${s.index}`)} {`, `    label=${quote(`${title} (${s.platform})`)};`);
    for (const id of s.vertices) {
      const v = byId.get(id);
      if (v === undefined) continue;
      const style = v.op.type === 'meta' ? ', style=dashed' : v.id === graph.output ? ', style=bold' : '';
      lines.push(`    ${quote(v.id)} [label=${quote(v.name)}${style}];`);
    }
    lines.push('  }');
  }
  for (const v of graph.vertices) {
    v.inputs.forEach((input, i) => {
      const sameChain = i === 0 && byId.get(input)?.stage === v.stage;
      lines.push(`  ${quote(input)} -> ${quote(v.id)}${sameChain ? '' : ' [style=dashed]'};`);
    });
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
