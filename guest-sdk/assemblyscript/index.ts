// Package entry of wasmpod-sdk: asc resolves `import ... from "wasmpod-sdk"` to this file.
export * from "./assembly/index";
