/**
 * nbprod's JupyterLab extension: the "Production" panel in the left sidebar.
 *
 * The panel is a thin client of the nbprod server extension (/nbprod/api/); "Open monitor" inserts
 * `%nbprod monitor NAME` (after `%load_ext nbprod`) below the active cell of the current notebook and runs it
 * (once the notebook's kernel session exists: a notebook opened a moment ago may still be starting one).
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { ProductionPanel } from './panel';
import iconSvg from '../style/icon.svg';

export const productionIcon = new LabIcon({ name: 'nbprod:production', svgstr: iconSvg });

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbprod:sidebar',
  description: 'Models, deployments and jobs of nbprod, with promote / roll back / split.',
  autoStart: true,
  optional: [ILayoutRestorer, INotebookTracker],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, notebooks: INotebookTracker | null) => {
    const openMonitor = async (name: string): Promise<void> => {
      const current = notebooks?.currentWidget;
      if (!current) {
        throw new Error(`open a notebook first: "Open monitor" runs %nbprod monitor ${name} in it`);
      }
      app.shell.activateById(current.id);
      const notebook = current.content;
      NotebookActions.insertBelow(notebook);
      const cell = notebook.activeCell;
      if (!cell) {
        throw new Error('the notebook has no active cell to insert into');
      }
      // %load_ext first: the magic exists only in kernels that loaded nbprod (a repeat load is a no-op)
      cell.model.sharedModel.setSource(`%load_ext nbprod\n%nbprod monitor ${name}`);
      // A notebook opened a moment ago may have no session yet (its kernel is starting): JupyterLab's
      // run then clears the cell's prompt and sends nothing, so the cell would sit there never run.
      // Wait until the session exists, then run exactly this cell (the user may have moved meanwhile).
      const session = current.sessionContext;
      await session.ready;
      if (!session.session?.kernel) {
        throw new Error(
          `the notebook has no kernel: pick one (Kernel > Change Kernel…) and run the cell "%nbprod monitor ${name}"`
        );
      }
      await NotebookActions.runCells(notebook, [cell], session);
    };
    const panel = new ProductionPanel(openMonitor);
    panel.title.icon = productionIcon;
    app.shell.add(panel, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(panel, 'nbprod-production');
    }
  }
};

export default plugin;
