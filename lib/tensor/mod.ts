export * from "./tensor.ts";
export { setRealizer, type Realizer } from "./realize.ts";
