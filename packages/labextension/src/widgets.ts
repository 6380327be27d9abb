/**
 * Widgets shown by cells the server runs: the output that shows a widget arrives over the
 * document's socket, its model (`comm_open`) over the window's kernel socket, and the
 * output often comes first (ipywidgets #4026). ipywidgets' manager then looks for the model
 * every 100 ms (for 2 s), so the widget shows up to 100 ms after its model came. Here the
 * notebook's widget manager finds a model as soon as it is registered instead: a renderer
 * waiting for one is answered when its `comm_open` has been handled.
 *
 * Only what ipywidgets 8's manager has is used (`get_model`, `register_model`, and the
 * models it keeps); a manager without them is left as it is.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { NotebookPanel } from '@jupyterlab/notebook';

const PLUGIN_ID = 'jupyter-datastore:widgets';
const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';
/** How long a renderer waits for a model that has not come, as ipywidgets waits. */
const MODEL_WAIT = 2000;

/** The parts of ipywidgets' manager (`ManagerBase`) used here. */
interface IWidgetManager {
  _models: { [id: string]: Promise<unknown> | undefined };
  get_model(id: string): Promise<unknown>;
  register_model(id: string, model: Promise<unknown>): void;
}

const patched = new WeakSet<object>();

function isManager(value: unknown): value is IWidgetManager {
  const manager = value as IWidgetManager | null;
  return (
    !!manager &&
    typeof manager.get_model === 'function' &&
    typeof manager.register_model === 'function' &&
    typeof manager._models === 'object'
  );
}

/** Answer `get_model` when the model is registered, not at the next 100 ms look. */
function patchManager(manager: IWidgetManager): void {
  if (patched.has(manager)) {
    return;
  }
  patched.add(manager);
  const waiting = new Map<string, Array<(model: Promise<unknown>) => void>>();
  const register = manager.register_model.bind(manager);
  manager.register_model = (id: string, model: Promise<unknown>): void => {
    register(id, model);
    const waiters = waiting.get(id);
    waiting.delete(id);
    waiters?.forEach(resolve => resolve(model));
  };
  manager.get_model = (id: string): Promise<unknown> => {
    const known = manager._models[id];
    if (known !== undefined) {
      return known;
    }
    return new Promise<unknown>((resolve, reject) => {
      const found = (model: Promise<unknown>): void => {
        window.clearTimeout(timer);
        resolve(model);
      };
      const timer = window.setTimeout(() => {
        const others = (waiting.get(id) ?? []).filter(f => f !== found);
        if (others.length) {
          waiting.set(id, others);
        } else {
          waiting.delete(id);
        }
        reject(new Error('widget model not found')); // as ipywidgets says it
      }, MODEL_WAIT);
      waiting.set(id, [...(waiting.get(id) ?? []), found]);
    });
  };
}

type Factory = NonNullable<ReturnType<NotebookPanel['content']['rendermime']['getFactory']>>;

/** The widget manager a renderer factory of ipywidgets' gives its renderers, if it gives
 * one now (ipywidgets registers a factory without one until the kernel is connected). */
async function managerOf(factory: Factory): Promise<IWidgetManager | null> {
  type Options = Parameters<Factory['createRenderer']>[0];
  const renderer = factory.createRenderer({ mimeType: WIDGET_VIEW } as Options) as ReturnType<
    Factory['createRenderer']
  > & { _manager?: { promise?: Promise<unknown> } };
  try {
    const none = Symbol('no manager yet');
    const given = renderer._manager?.promise;
    const manager = given ? await Promise.race([given, Promise.resolve(none)]) : none;
    return isManager(manager) ? manager : null;
  } finally {
    renderer.dispose();
  }
}

/** Patch the widget manager of a notebook's outputs, now if ipywidgets has made it, else
 * when it registers the renderers that use it (once its kernel is connected). */
function follow(panel: NotebookPanel): void {
  const rendermime = panel.content.rendermime;
  const patch = (factory: Factory | undefined): void => {
    if (factory?.mimeTypes.includes(WIDGET_VIEW)) {
      void managerOf(factory)
        .then(manager => manager && patchManager(manager))
        .catch(() => undefined); // a renderer of another shape: left as it is
    }
  };
  const add = rendermime.addFactory.bind(rendermime);
  rendermime.addFactory = (factory: Factory, rank?: number): void => {
    add(factory, rank);
    patch(factory);
  };
  patch(rendermime.getFactory(WIDGET_VIEW));
}

export const widgetsPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    "A widget shown by a server run renders as soon as its model arrives, not at ipywidgets' next look.",
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: NotebookPanel) => follow(panel)
    });
  }
};
