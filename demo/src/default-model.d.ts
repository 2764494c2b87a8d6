/** The model served with the page (see demo/vite.config.ts). */
declare module "virtual:default-model" {
  const model: {
    /** Relative to the page. */
    readonly url: string;
    readonly bytes: number;
    /** Random weights (no trained model was found at build time): its text is noise. */
    readonly synthetic: boolean;
    readonly fileName: string;
  };
  export default model;
}
