/** Graph → graph passes: functional autodiff (JAX's vjp / grad / valueAndGrad) and its building blocks. */
export { backward, type Back, type Cotangent, grad, type Outputs, valueAndGrad, vjp } from "./autodiff.ts";
export { type DiffOp, VJP_RULES, type VjpContext, type VjpRule } from "./vjp_rules.ts";
export { type FlexBwd, flexBwdInputs, flexBwdLayout, type FlexBwdLayout, type FlexGradArg, flexGradNode, type FlexGradWhich } from "./flex_grad.ts";
