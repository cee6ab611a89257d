/**
 * The sidebar's only link to nbprod: the server extension's REST API under /nbprod/api/.
 * ServerConnection sends Jupyter's token and the XSRF header, so every call is authenticated.
 * Types mirror the `to_dict()` answers of nbprod's Python API; nothing here computes them.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface Figure {
  value: number | null;
  status: string;
}

export interface AlertState {
  rule: string;
  firing: boolean;
  since: string | null;
  value: number | null;
  message: string | null;
}

export interface Health {
  window: string;
  figures: { [metric: string]: Figure };
  drift: string;
  alerts: AlertState[];
  firing: string[];
  note: string | null;
}

export interface Route {
  version: string;
  role: string;
  weight: number;
  uri: string;
}

/** The deployment's recorded alert settings (`deployments.alerting.view`), never the webhook URL. */
export interface AlertSettings {
  rules: string[];
  interval_s: number | null;
  window: string | null;
  on_alert?: { [rule: string]: string };
  pending?: boolean;
}

export interface DeploymentRow {
  name: string;
  url: string | null;
  state: string;
  workers: string;
  routes: Route[];
  detail: string;
  alerts: AlertSettings | null;
  budget_p95_ms: number | null;
  previous_version: string | null;
  health: Health | null;
}

export interface ModelVersion {
  name: string;
  version: string;
  uri: string;
  aliases: string[];
  key_metrics: { [metric: string]: number };
  created_at: string | null;
}

/** A notebook job as `nbprod runs` lists it (`jobs.results.JobResult.to_dict`). */
export interface Job {
  run_id: string;
  status: string;
  notebook: string;
  seconds: number;
}

/** What the server answers when it refuses: the same problem and fix the magic prints. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly problem: string,
    readonly fix: string | null
  ) {
    super(problem);
  }
}

export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nbprod', 'api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, 'network', `cannot reach the Jupyter server: ${error}`, 'check that JupyterLab still runs');
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      body?.error ?? `http ${response.status}`,
      body?.problem ?? (text || response.statusText),
      body?.fix ?? null
    );
  }
  return body as T;
}

export function act(name: string, action: string, body: object = {}): Promise<unknown> {
  return requestAPI(`deployments/${encodeURIComponent(name)}/${action}`, {
    method: 'POST',
    body: JSON.stringify(body)
  });
}
