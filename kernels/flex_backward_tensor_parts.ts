/**
 * What both tensor-family backward templates emit alike (kernels/flex_backward_tensor.ts, the direct-load one, and
 * kernels/flex_backward_tensor_pipe.ts, the pipelined one): the epilogue that writes an accumulator set through `fs`.
 */
import type { SubgroupMatrixOps } from "./subgroup_matrix.ts";

export interface TensorBwdShape {
  readonly mx: SubgroupMatrixOps;
  /** matrixNaming(emulate, …).each and .fr */
  readonly each: (loops: [string, number, number][], body: (...ix: string[]) => string) => string;
  readonly fr: (name: string, cols: number, i: string, j: string) => string;
  /** Owner rows per workgroup and per subgroup, their 16-row tiles; streamed columns in 16s; threads; fs row stride. */
  readonly BA: number;
  readonly R: number;
  readonly TR: number;
  readonly BB16: number;
  readonly NT: number;
  readonly SST: number;
}

/** The epilogue: the accumulator set `acc` (KW 16-column tiles, `width` real columns) through fs in chunks of BB
 * columns, row- and column-guarded, × `factor`, into grads at `off` + the owner rows. */
export function tensorBwdWriteAcc(s: TensorBwdShape) {
  const { mx, each, fr, BA, R, TR, BB16, NT, SST } = s;
  return (acc: string, KW: number, width: number, off: string, factor: string) => {
    const out: string[] = [];
    for (let j0 = 0; j0 < KW; j0 += BB16) {
      const j1 = Math.min(KW, j0 + BB16);
      out.push(`  workgroupBarrier();
${each([["ti", 0, TR], ["tj", j0, j1]], (i, j) => `  ${mx.store("fs", `(sg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j} - ${j0}u)`, fr(acc, KW, i, j), `${SST}u`)}`)}
  workgroupBarrier();
  for (var idx = tid; idx < ${BA * 16 * (j1 - j0)}u; idx += ${NT}u) {
    let r = idx / ${16 * (j1 - j0)}u;
    let cc = idx % ${16 * (j1 - j0)}u;
    let row = row0 + r;
    if (row < row_limit${16 * j1 <= width ? "" : ` && ${16 * j0}u + cc < ${width}u`}) {
      grads[${off} + (a_base + row) * ${width}u + ${16 * j0}u + cc] = fs[r * ${SST}u + cc]${factor};
    }
  }`);
    }
    return out.join("\n");
  };
}
