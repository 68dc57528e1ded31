// Lint configuration: typescript-eslint's recommended rules over our
// sources, and over the server's code two type-aware ones about promises.
import { fileURLToPath, URL } from "node:url";
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "build/**", "node_modules/**", "bench/results/**", ".cache/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  {
    // A promise that rejects with nobody awaiting or catching it ends the
    // process (Node's default for an unhandled rejection): in the server,
    // every promise is awaited, caught, or marked `void` on purpose.
    files: ["src/**/*.ts", "src/**/*.cts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: fileURLToPath(new URL(".", import.meta.url)) } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
    },
  },
  {
    files: ["bin/*", "**/*.js"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
  },
);
