/**
 * GGML tensor types and their block layouts: the one table that the reader, the
 * writer, the CPU quant code and the GPU kernel keys all share.
 * Numbers are GGML's `enum ggml_type` values, as stored in GGUF tensor infos.
 */
export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  // The i-quants: only IQ4_NL and IQ4_XS have layouts below; the others are named here so
  // that the error refusing them says which type a tensor has.
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  IQ1_M = 29,
  BF16 = 30,
}

/** How a type packs values: `blockSize` values in `typeSize` bytes. */
export interface BlockLayout {
  readonly name: string;
  readonly blockSize: number;
  readonly typeSize: number;
}

/** K-quants use super-blocks of this many values. */
export const QK_K = 256;

/** Block layouts of the types this runtime knows (ggml.c `type_traits`). */
export const BLOCK_LAYOUTS: ReadonlyMap<GGMLType, BlockLayout> = new Map([
  [GGMLType.F32, { name: "F32", blockSize: 1, typeSize: 4 }],
  [GGMLType.F16, { name: "F16", blockSize: 1, typeSize: 2 }],
  [GGMLType.BF16, { name: "BF16", blockSize: 1, typeSize: 2 }],
  [GGMLType.Q4_0, { name: "Q4_0", blockSize: 32, typeSize: 2 + 16 }],
  [GGMLType.Q4_1, { name: "Q4_1", blockSize: 32, typeSize: 2 + 2 + 16 }],
  [GGMLType.Q5_0, { name: "Q5_0", blockSize: 32, typeSize: 2 + 4 + 16 }],
  [GGMLType.Q5_1, { name: "Q5_1", blockSize: 32, typeSize: 2 + 2 + 4 + 16 }],
  [GGMLType.Q8_0, { name: "Q8_0", blockSize: 32, typeSize: 2 + 32 }],
  [GGMLType.Q2_K, { name: "Q2_K", blockSize: QK_K, typeSize: QK_K / 16 + QK_K / 4 + 2 + 2 }],
  [GGMLType.Q3_K, { name: "Q3_K", blockSize: QK_K, typeSize: QK_K / 8 + QK_K / 4 + 12 + 2 }],
  [GGMLType.Q4_K, { name: "Q4_K", blockSize: QK_K, typeSize: 2 + 2 + 12 + QK_K / 2 }],
  [GGMLType.Q5_K, { name: "Q5_K", blockSize: QK_K, typeSize: 2 + 2 + 12 + QK_K / 8 + QK_K / 2 }],
  [GGMLType.Q6_K, { name: "Q6_K", blockSize: QK_K, typeSize: QK_K / 2 + QK_K / 4 + QK_K / 16 + 2 }],
  [GGMLType.IQ4_NL, { name: "IQ4_NL", blockSize: 32, typeSize: 2 + 16 }],
  [GGMLType.IQ4_XS, { name: "IQ4_XS", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 64 + QK_K / 2 }],
]);

/** The name of a GGML type number, including ones this runtime does not know. */
export function ggmlTypeName(type: number): string {
  return BLOCK_LAYOUTS.get(type)?.name ?? GGMLType[type] ?? `type#${type}`;
}

/** Bytes taken by `nElements` values of `type`; throws if the count is not whole blocks. */
export function tensorByteLength(type: GGMLType, nElements: number): number {
  const layout = BLOCK_LAYOUTS.get(type);
  if (!layout) throw new RangeError(`unknown GGML type ${type}`);
  if (nElements % layout.blockSize !== 0) {
    throw new RangeError(`${layout.name}: ${nElements} values is not a whole number of ${layout.blockSize}-value blocks`);
  }
  return (nElements / layout.blockSize) * layout.typeSize;
}
