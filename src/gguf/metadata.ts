/**
 * GGUF metadata values: the value-type numbers shared by the reader and the writer, and
 * typed getters that turn a missing or mistyped key into a `ModelConfigError` naming it.
 */
import { ModelConfigError } from "../errors.ts";

/** GGUF metadata value types, as stored before each value (`enum gguf_type`). */
export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/**
 * A metadata value as read: 8- to 32-bit integers and floats are `number`, 64-bit
 * integers are `bigint` (so no precision is lost), arrays hold their elements.
 */
export type MetadataValue = string | number | bigint | boolean | readonly MetadataValue[];

/** The stored type of one metadata entry; `elementType` is set for arrays. */
export interface MetadataTypeInfo {
  readonly type: GGUFValueType;
  readonly elementType?: GGUFValueType;
}

/** Metadata as the reader exposes it: key to value. */
export type Metadata = Readonly<Record<string, MetadataValue>>;

function describe(value: MetadataValue): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return `${typeof value} ${JSON.stringify(typeof value === "bigint" ? value.toString() : value)}`;
}

function lookup(meta: Metadata, key: string): MetadataValue | undefined {
  // Own keys only: a key such as "constructor" must not resolve through a prototype.
  return Object.prototype.hasOwnProperty.call(meta, key) ? meta[key] : undefined;
}

function missing(key: string): ModelConfigError {
  return new ModelConfigError(key, "required metadata key is missing");
}

/** Whether `key` is present. */
export function hasKey(meta: Metadata, key: string): boolean {
  return lookup(meta, key) !== undefined;
}

/** The string at `key`, or `fallback` when absent; throws when present with another type. */
export function getString(meta: Metadata, key: string, fallback?: string): string {
  const v = lookup(meta, key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw missing(key);
  }
  if (typeof v !== "string") throw new ModelConfigError(key, `expected a string, found ${describe(v)}`);
  return v;
}

function toNumber(key: string, v: MetadataValue): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") {
    // 64-bit integers are fine as long as they survive the trip to a double.
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new ModelConfigError(key, `value ${v} is too large to use as a number`);
    }
    return Number(v);
  }
  throw new ModelConfigError(key, `expected a number, found ${describe(v)}`);
}

/** The number at `key` (any integer or float type), or `fallback` when absent. */
export function getNumber(meta: Metadata, key: string, fallback?: number): number {
  const v = lookup(meta, key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw missing(key);
  }
  return toNumber(key, v);
}

/** Like {@link getNumber}, but the value must be a whole number ≥ `min` (default 0). */
export function getInteger(meta: Metadata, key: string, fallback?: number, min = 0): number {
  const n = getNumber(meta, key, fallback);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ModelConfigError(key, `expected a whole number ≥ ${min}, found ${n}`);
  }
  return n;
}

/** The boolean at `key`, or `fallback` when absent. */
export function getBoolean(meta: Metadata, key: string, fallback?: boolean): boolean {
  const v = lookup(meta, key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw missing(key);
  }
  if (typeof v !== "boolean") throw new ModelConfigError(key, `expected a boolean, found ${describe(v)}`);
  return v;
}

/** The array at `key`; throws when absent or not an array. */
export function getArray(meta: Metadata, key: string): readonly MetadataValue[] {
  const v = lookup(meta, key);
  if (v === undefined) throw missing(key);
  if (!Array.isArray(v)) throw new ModelConfigError(key, `expected an array, found ${describe(v)}`);
  return v;
}

/** The array of strings at `key`; throws naming the first element of another type. */
export function getStringArray(meta: Metadata, key: string): readonly string[] {
  const out: string[] = [];
  for (const [i, e] of getArray(meta, key).entries()) {
    if (typeof e !== "string") throw new ModelConfigError(key, `element ${i}: expected a string, found ${describe(e)}`);
    out.push(e);
  }
  return out;
}

/** The array of numbers at `key` (64-bit integers converted when safe). */
export function getNumberArray(meta: Metadata, key: string): number[] {
  return getArray(meta, key).map((e, i) => toNumber(`${key}[${i}]`, e));
}
