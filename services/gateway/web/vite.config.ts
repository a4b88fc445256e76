import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The gateway serves dist/index.html for every console path and dist/assets at /assets,
// so the build uses absolute asset URLs from "/". `npm run dev` proxies the API to a
// running gateway (GATEWAY_URL, default that of `make run`).
const gateway = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir: "dist", assetsDir: "assets", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      "/v1/ws": { target: gateway.replace(/^http/, "ws"), ws: true },
      "/v1": gateway,
    },
  },
  test: {
    include: ["src/**/*.test.{ts,tsx}"],
    environment: "node",
  },
});
