/**
 * The "Production" sidebar: renders what /nbprod/api/ answers and posts the actions.
 *
 * No business logic lives here: which version a promote picks, whether a rollback is allowed,
 * what the health figures are: all of it comes from nbprod's Python API through the handlers.
 * The panel only formats numbers, names the change in a confirmation dialog, and shows the
 * server's problem and fix when it refuses.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { act, ApiError, DeploymentRow, Job, ModelVersion, requestAPI, Route } from './api';

const REFRESH_MS = 10000;

/** Create an element with a class and optional text (textContent: nothing from the server is parsed as HTML). */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function share(route: Route): string {
  return route.role === 'shadow' ? 'copy' : `${route.weight}%`;
}

function routesText(routes: Route[]): string {
  return routes.map(r => `v${r.version} ${r.role} ${share(r)}`).join(', ');
}

function fmtMs(value: number | null, status: string): string {
  return value === null ? status : `${value.toFixed(1)} ms`;
}

function fmtRate(value: number | null, status: string): string {
  return value === null ? status : `${(value * 100).toFixed(1)}%`;
}

function fmtMetric(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

/** A dialog body with a text field: the split as "1=50, 2=50". */
class SplitBody extends Widget implements Dialog.IBodyWidget<string> {
  private input: HTMLInputElement;

  constructor(routes: Route[]) {
    super();
    this.addClass('nbprod-split-body');
    this.node.appendChild(el('p', '', 'Percent of traffic per version, adding up to 100 (e.g. 1=50, 2=50):'));
    this.input = el('input', 'jp-mod-styled nbprod-split-input');
    this.input.value = routes
      .filter(r => r.role !== 'shadow')
      .map(r => `${r.version}=${r.weight}`)
      .join(', ');
    this.node.appendChild(this.input);
  }

  getValue(): string {
    return this.input.value;
  }
}

export class ProductionPanel extends Widget {
  private errorBox: HTMLDivElement;
  private deploymentsBox: HTMLDivElement;
  private modelsBox: HTMLDivElement;
  private jobsBox: HTMLDivElement;
  private updated: HTMLSpanElement;
  private timer = 0;
  private busy = false;
  private loading: Promise<void> | null = null;
  private again = false;

  constructor(private openMonitor: (name: string) => Promise<void>) {
    super();
    this.id = 'nbprod-production';
    this.addClass('nbprod-panel');
    this.title.caption = 'Production (nbprod)';

    const header = el('div', 'nbprod-header');
    header.appendChild(el('span', 'nbprod-title', 'Production'));
    this.updated = el('span', 'nbprod-updated');
    header.appendChild(this.updated);
    const refresh = el('button', 'jp-Button nbprod-refresh', '↻');
    refresh.title = 'Refresh';
    refresh.onclick = () => void this.refresh();
    header.appendChild(refresh);
    this.node.appendChild(header);

    this.errorBox = el('div', 'nbprod-error');
    this.errorBox.hidden = true;
    this.node.appendChild(this.errorBox);

    this.node.appendChild(el('h3', 'nbprod-section', 'Deployments'));
    this.deploymentsBox = el('div', 'nbprod-deployments');
    this.node.appendChild(this.deploymentsBox);
    this.node.appendChild(el('h3', 'nbprod-section', 'Models'));
    this.modelsBox = el('div', 'nbprod-models');
    this.node.appendChild(this.modelsBox);
    this.jobsBox = el('div', 'nbprod-jobs');
    this.node.appendChild(this.jobsBox);
  }

  protected onAfterAttach(): void {
    void this.refresh();
    this.timer = window.setInterval(() => {
      if (this.isVisible && !this.busy && !this.loading) {
        void this.refresh();
      }
    }, REFRESH_MS);
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  /** Show the server's refusal (problem and fix) at the top of the panel until the next action. */
  showError(error: unknown, what: string): void {
    this.errorBox.replaceChildren();
    const head = el('div', 'nbprod-error-head', `${what} refused`);
    this.errorBox.appendChild(head);
    if (error instanceof ApiError) {
      this.errorBox.appendChild(el('div', 'nbprod-error-problem', error.problem));
      if (error.fix) {
        this.errorBox.appendChild(el('div', 'nbprod-error-fix', `Fix: ${error.fix}`));
      }
    } else {
      this.errorBox.appendChild(el('div', 'nbprod-error-problem', String(error)));
    }
    const close = el('button', 'jp-Button nbprod-error-close', '×');
    close.title = 'Dismiss';
    close.onclick = () => this.clearError();
    head.appendChild(close);
    this.errorBox.hidden = false;
  }

  clearError(): void {
    this.errorBox.hidden = true;
    this.errorBox.replaceChildren();
  }

  /**
   * Read the three lists again. One read at a time: a slow server (its first call imports MLflow) would
   * otherwise collect a read every REFRESH_MS, each holding a thread of the Jupyter server. A refresh
   * asked for meanwhile (after an action) runs once the current one is done, so it sees the change.
   */
  refresh(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = this.load().finally(() => {
      this.loading = null;
      if (this.again) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.loading;
  }

  /** Each section is drawn as soon as its own answer is in: deployments do not wait for the jobs. */
  private async load(): Promise<void> {
    await Promise.all([
      requestAPI<{ deployments: DeploymentRow[] }>('deployments').then(
        value => this.renderDeployments(value.deployments),
        reason => this.renderFailure(this.deploymentsBox, reason)
      ),
      requestAPI<{ versions: ModelVersion[] }>('models').then(
        value => this.renderModels(value.versions),
        reason => this.renderFailure(this.modelsBox, reason)
      ),
      requestAPI<{ jobs: Job[] }>('jobs').then(
        value => this.renderJobs(value.jobs),
        reason => this.renderJobs([], reason)
      )
    ]);
    this.updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  private renderFailure(box: HTMLElement, error: unknown): void {
    const text = error instanceof ApiError ? `${error.problem}${error.fix ? ` (${error.fix})` : ''}` : String(error);
    box.replaceChildren(el('div', 'nbprod-empty', text));
  }

  private renderDeployments(rows: DeploymentRow[]): void {
    this.deploymentsBox.replaceChildren();
    if (!rows.length) {
      this.deploymentsBox.appendChild(
        el('div', 'nbprod-empty', 'No deployments yet: %nbprod deploy MODEL@champion --name NAME')
      );
      return;
    }
    for (const row of rows) {
      this.deploymentsBox.appendChild(this.deploymentCard(row));
    }
  }

  private deploymentCard(row: DeploymentRow): HTMLElement {
    const card = el('div', 'nbprod-card nbprod-deployment');
    card.dataset.name = row.name;
    const head = el('div', 'nbprod-card-head');
    const dot = el('span', `nbprod-dot nbprod-state-${row.state}`);
    dot.title = row.state + (row.detail ? `: ${row.detail}` : '');
    head.appendChild(dot);
    head.appendChild(el('span', 'nbprod-name', row.name));
    head.appendChild(el('span', 'nbprod-state', row.state));
    card.appendChild(head);

    // traffic: one segment per version, its width its share
    const bar = el('div', 'nbprod-traffic');
    bar.title = routesText(row.routes);
    for (const r of row.routes.filter(r => r.role !== 'shadow')) {
      const seg = el('div', `nbprod-seg nbprod-role-${r.role}`, `v${r.version} ${r.weight}%`);
      seg.style.flexGrow = String(Math.max(r.weight, 0.0001));
      seg.dataset.version = r.version;
      bar.appendChild(seg);
    }
    card.appendChild(bar);
    card.appendChild(el('div', 'nbprod-routes', routesText(row.routes)));
    // retraining from an alert: which rule starts which pipeline file (the file's name; its path as a tooltip)
    for (const [rule, file] of Object.entries(row.alerts?.on_alert ?? {})) {
      const line = el('div', 'nbprod-routes nbprod-on-alert', `on alert: ${rule} → ${file.split('/').pop()}`);
      line.title = file;
      card.appendChild(line);
    }

    const h = row.health;
    if (h) {
      const figures = el('div', 'nbprod-figures');
      const p95 = h.figures['p95_ms'] ?? { value: null, status: '–' };
      const budget = row.budget_p95_ms;
      const p95Text = `p95 ${fmtMs(p95.value, p95.status)}` + (budget !== null ? ` / ${budget} ms budget` : '');
      const over = budget !== null && p95.value !== null && p95.value > budget;
      figures.appendChild(el('span', over ? 'nbprod-fig nbprod-over' : 'nbprod-fig', p95Text));
      const err = h.figures['error_rate'] ?? { value: null, status: '–' };
      figures.appendChild(el('span', 'nbprod-fig', `errors ${fmtRate(err.value, err.status)}`));
      const driftClass = h.drift === 'drift' ? 'nbprod-badge nbprod-drift' : 'nbprod-badge nbprod-nodrift';
      figures.appendChild(el('span', driftClass, h.drift === 'drift' ? 'DRIFT' : `drift: ${h.drift}`));
      card.appendChild(figures);
      if (h.firing.length) {
        const alerts = el('div', 'nbprod-alerts');
        for (const a of h.alerts.filter(a => a.firing)) {
          const badge = el('span', 'nbprod-badge nbprod-alert', `firing: ${a.rule}`);
          badge.title = a.message ?? '';
          alerts.appendChild(badge);
        }
        card.appendChild(alerts);
      }
    }

    const buttons = el('div', 'nbprod-buttons');
    const candidates = row.routes.filter(r => r.role !== 'stable');
    const running = row.state !== 'stopped';
    buttons.appendChild(this.button('Promote', running && candidates.length > 0, () => this.promote(row)));
    buttons.appendChild(this.button('Roll back', running, () => this.rollback(row)));
    buttons.appendChild(this.button('Set split', running, () => this.split(row)));
    buttons.appendChild(this.button('Open monitor', true, () => this.monitor(row.name)));
    card.appendChild(buttons);
    return card;
  }

  private button(label: string, enabled: boolean, onClick: () => Promise<void>): HTMLButtonElement {
    const b = el('button', 'jp-Button nbprod-action', label);
    b.disabled = !enabled;
    b.onclick = () => void onClick();
    return b;
  }

  /** Confirm, post, refresh; a refusal shows the server's problem and fix. */
  private async confirmAndAct(
    title: string,
    body: string,
    label: string,
    name: string,
    action: string,
    payload: object = {}
  ): Promise<void> {
    const answer = await showDialog({
      title,
      body,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
    });
    if (!answer.button.accept) {
      return;
    }
    this.busy = true;
    this.clearError();
    try {
      await act(name, action, payload);
    } catch (error) {
      this.showError(error, `${label} ${name}`);
    } finally {
      this.busy = false;
      await this.refresh();
    }
  }

  private async promote(row: DeploymentRow): Promise<void> {
    const stable = row.routes.find(r => r.role === 'stable');
    const candidates = row.routes.filter(r => r.role !== 'stable');
    let target = candidates[0];
    if (candidates.length > 1) {
      const choice = await showDialog({
        title: `Promote which version of ${row.name}?`,
        buttons: [Dialog.cancelButton(), ...candidates.map(c => Dialog.okButton({ label: `v${c.version}` }))]
      });
      if (!choice.button.accept) {
        return;
      }
      target = candidates.find(c => `v${c.version}` === choice.button.label) ?? target;
    }
    const body =
      `${row.name}: v${target.version} (${target.role}, ${share(target)}) gets 100% of traffic and @champion; ` +
      (stable ? `v${stable.version} (stable, ${share(stable)}) stops serving and is kept for a roll back.` : '');
    await this.confirmAndAct(`Promote v${target.version}?`, body, 'Promote', row.name, 'promote', {
      version: target.version
    });
  }

  private async rollback(row: DeploymentRow): Promise<void> {
    const stable = row.routes.find(r => r.role === 'stable');
    const others = row.routes.filter(r => r.role !== 'stable');
    let body: string;
    if (others.length && stable) {
      body =
        `${row.name}: drop ${others.map(r => `v${r.version} (${r.role}, ${share(r)})`).join(', ')}; ` +
        `v${stable.version} gets 100% of traffic.`;
    } else if (row.previous_version && stable) {
      body =
        `${row.name}: v${stable.version} → v${row.previous_version} (100% of traffic); ` +
        `@champion moves back to v${row.previous_version} if it points at v${stable.version}.`;
    } else {
      body = `${row.name}: no earlier version is recorded, so nbprod will refuse and say what to do instead.`;
    }
    await this.confirmAndAct(`Roll back ${row.name}?`, body, 'Roll back', row.name, 'rollback');
  }

  private async split(row: DeploymentRow): Promise<void> {
    const edit = await showDialog({
      title: `Set the traffic split of ${row.name}`,
      body: new SplitBody(row.routes),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Next' })]
    });
    if (!edit.button.accept || edit.value === null) {
      return;
    }
    const split: { [version: string]: number } = {};
    for (const part of edit.value.split(',')) {
      const [version, weight] = part.split('=').map(s => s.trim().replace(/^v/, ''));
      if (version) {
        split[version] = Number(weight);
      }
    }
    const now = Object.fromEntries(row.routes.filter(r => r.role !== 'shadow').map(r => [r.version, r.weight]));
    const changes = Object.entries(split).map(([v, w]) => `v${v} ${now[v] ?? 0}% → ${w}%`);
    for (const v of Object.keys(now).filter(v => !(v in split))) {
      changes.push(`v${v} ${now[v]}% → removed`);
    }
    await this.confirmAndAct(
      `Set split of ${row.name}?`,
      `${row.name}: ${changes.join(', ')}.`,
      'Set split',
      row.name,
      'split',
      { split }
    );
  }

  private async monitor(name: string): Promise<void> {
    try {
      await this.openMonitor(name);
    } catch (error) {
      this.showError(error, `Open monitor ${name}`);
    }
  }

  private renderModels(versions: ModelVersion[]): void {
    this.modelsBox.replaceChildren();
    if (!versions.length) {
      this.modelsBox.appendChild(el('div', 'nbprod-empty', 'No registered models yet: %nbprod register …'));
      return;
    }
    let current = '';
    let list: HTMLElement | null = null;
    for (const v of versions) {
      if (v.name !== current) {
        current = v.name;
        const model = el('div', 'nbprod-card nbprod-model');
        model.dataset.name = v.name;
        model.appendChild(el('div', 'nbprod-name', v.name));
        list = el('div', 'nbprod-versions');
        model.appendChild(list);
        this.modelsBox.appendChild(model);
      }
      const line = el('div', 'nbprod-version');
      line.dataset.version = v.version;
      line.appendChild(el('span', 'nbprod-vnum', `v${v.version}`));
      for (const alias of v.aliases) {
        line.appendChild(el('span', `nbprod-badge nbprod-alias nbprod-alias-${alias}`, `@${alias}`));
      }
      const metrics = Object.entries(v.key_metrics)
        .map(([k, m]) => `${k} ${fmtMetric(m)}`)
        .join(' · ');
      if (metrics) {
        line.appendChild(el('span', 'nbprod-metrics', metrics));
      }
      list!.appendChild(line);
    }
  }

  /** The recent notebook jobs; none: no section. A failed call is shown, never an empty list. */
  private renderJobs(jobs: Job[], failure?: unknown): void {
    this.jobsBox.replaceChildren();
    if (!jobs.length && failure === undefined) {
      return;
    }
    this.jobsBox.appendChild(el('h3', 'nbprod-section', 'Jobs'));
    if (failure !== undefined) {
      const box = el('div');
      this.jobsBox.appendChild(box);
      this.renderFailure(box, failure);
      return;
    }
    for (const job of jobs) {
      const line = el('div', 'nbprod-card nbprod-job');
      line.title = `${job.notebook}\njob ${job.run_id}`;
      line.appendChild(el('span', 'nbprod-name', job.notebook.split(/[\\/]/).pop() || job.notebook));
      const state = job.status.toLowerCase();
      line.appendChild(el('span', `nbprod-badge nbprod-job-${state}`, state));
      line.appendChild(el('span', 'nbprod-metrics', `${job.seconds.toFixed(1)} s`));
      this.jobsBox.appendChild(line);
    }
  }
}
