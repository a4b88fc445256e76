/** A page that throws while rendering shows what happened instead of a blank screen. */

import { Component, type ErrorInfo, type ReactNode } from "react";

interface State {
  error: Error | null;
}

export class ErrorBoundary extends Component<{ children: ReactNode }, State> {
  override state: State = { error: null };

  static getDerivedStateFromError(error: Error): State {
    return { error };
  }

  override componentDidCatch(error: Error, info: ErrorInfo) {
    console.error("console page failed", error, info.componentStack);
  }

  override render() {
    if (!this.state.error) return this.props.children;
    return (
      <section className="page" role="alert">
        <h1>Something went wrong on this page</h1>
        <p className="field-error">{this.state.error.message}</p>
        <p>
          The rest of the console still works. <a href="/">Back to the dashboard</a> or{" "}
          <button type="button" className="link-button" onClick={() => this.setState({ error: null })}>
            try again
          </button>
          .
        </p>
      </section>
    );
  }
}
