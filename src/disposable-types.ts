/**
 * The two declarations of `lib.esnext.disposable` that the public types use
 * (`Engine` and `WorkerEngine` implement `AsyncDisposable`), so that a consumer's
 * TypeScript with a plain `lib: ["ES2022", "DOM"]` compiles against the shipped `.d.ts`
 * files without adding `ESNext.Disposable`. They merge with the lib's (and @types/node's)
 * identical declarations where those are present. Types only: no value at run time.
 */
declare global {
  interface SymbolConstructor {
    /** The method `await using` calls when a scope ends. */
    readonly asyncDispose: unique symbol;
  }
  interface AsyncDisposable {
    [Symbol.asyncDispose](): PromiseLike<void>;
  }
}

export {};
