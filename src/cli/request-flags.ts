/**
 * The engine names a bad request option by its library name (`topP`), as the server and
 * the library want; a CLI user typed `--top-p`. This maps one to the other.
 */
import { InvalidArgumentError } from "../errors.ts";
import { InvalidRequestError } from "../engine/errors.ts";
import { kebab } from "./args.ts";

/** The CLI flag that sets each engine option, keyed by the option's name (`param`). */
export type OptionFlags = Readonly<Record<string, string>>;

/**
 * The flags of `optionNames` named after them (`topP` → `--top-p`), with `renamed` for
 * options whose flag has another name (`penaltyWindow` → `--repeat-last-n`).
 */
export function optionFlags(optionNames: readonly string[], renamed: OptionFlags = {}): OptionFlags {
  return { ...Object.fromEntries(optionNames.map((name) => [name, `--${kebab(name)}`])), ...renamed };
}

/**
 * `err` as an {@link InvalidArgumentError} naming the flag, when it is an
 * {@link InvalidRequestError} about an option a flag sets; otherwise `err` unchanged.
 */
export function asFlagError(err: unknown, flags: OptionFlags): unknown {
  if (!(err instanceof InvalidRequestError)) return err;
  const flag = flags[err.param];
  if (flag === undefined) return err;
  const prefix = `${err.param}: `;
  const detail = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  return new InvalidArgumentError(flag, detail);
}
