// ESLint for the app's custom components: `npm ci && npm run lint` (.ci/run does both).
// Each main.js is an ES module that Streamlit loads into the page (st.components.v2), so it sees
// the browser's globals and nothing else.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["app/components/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: globals.browser,
    },
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      // A handler that names a `const` declared further down works only if nothing calls it
      // before that line runs.
      "no-use-before-define": ["error", { functions: false }],
      "no-shadow": "error",
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
    },
  },
];
