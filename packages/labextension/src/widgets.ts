/**
 * Widgets shown by cells the server runs. The output that shows a widget arrives over the
 * document's socket, the widget's model (`comm_open`) over the window's kernel socket, and
 * the output often comes first (ipywidgets #4026). ipywidgets' renderer then asks its
 * manager for a model it does not have yet, and the manager looks again every 100 ms (for
 * 2 s): the widget shows up to 100 ms after its model came.
 *
 * Here a widget renderer's `renderModel` starts when the model is there: if the manager has
 * loaded the kernel's models (`restoredStatus`) and lacks this one, it waits for the
 * kernel's `comm_open` of that id, which JupyterLab emits once ipywidgets has made the
 * model. ipywidgets' manager and renderer are not changed: they run as they do, only later,
 * so a window reloaded during a run restores its widgets as ipywidgets does (a renderer
 * made while the manager still restores never waits here). After `MODEL_WAIT` without the
 * model, ipywidgets' renderer goes on with its own look.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Kernel, KernelMessage } from '@jupyterlab/services';

const PLUGIN_ID = 'jupyter-datastore:widgets';
const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';
/** The longest a renderer waits for its model's `comm_open`, as ipywidgets' own look. */
const MODEL_WAIT = 2000;

/** The parts of ipywidgets' manager (`ManagerBase`, `LabWidgetManager`) read here. */
interface IWidgetManager {
  readonly restoredStatus: boolean;
  has_model(id: string): boolean;
}

/** An ipywidgets renderer: it holds its manager in a promise. */
type WidgetRenderer = IRenderMime.IRenderer & {
  _manager?: { promise?: Promise<unknown> };
};

function isManager(value: unknown): value is IWidgetManager {
  const manager = value as IWidgetManager | null;
  return (
    !!manager &&
    typeof manager.has_model === 'function' &&
    typeof manager.restoredStatus === 'boolean'
  );
}

/** Resolve when the kernel has opened the comm `id` (its model is made), or after
 * `MODEL_WAIT`. */
function commOpened(kernel: Kernel.IKernelConnection, id: string): Promise<void> {
  return new Promise<void>(resolve => {
    const heard = (
      _: Kernel.IKernelConnection,
      msg: KernelMessage.IIOPubMessage
    ): void => {
      if (
        KernelMessage.isCommOpenMsg(msg) &&
        msg.content.comm_id === id
      ) {
        done();
      }
    };
    const done = (): void => {
      window.clearTimeout(timer);
      kernel.iopubMessage.disconnect(heard);
      resolve();
    };
    const timer = window.setTimeout(done, MODEL_WAIT);
    kernel.iopubMessage.connect(heard);
  });
}

/** Wait, before `renderer` renders `model`, for the widget model it names to be made. */
async function modelMade(
  renderer: WidgetRenderer,
  model: IRenderMime.IMimeModel,
  panel: NotebookPanel
): Promise<void> {
  const view = model.data[WIDGET_VIEW] as { model_id?: string } | undefined;
  const id = view?.model_id;
  const kernel = panel.sessionContext.session?.kernel;
  const given = renderer._manager?.promise;
  if (!id || !kernel || !given) {
    return;
  }
  const none = Symbol('no manager yet');
  const manager = await Promise.race([given, Promise.resolve(none)]);
  if (isManager(manager) && manager.restoredStatus && !manager.has_model(id)) {
    await commOpened(kernel, id);
  }
}

type Factory = IRenderMime.IRendererFactory;

/** ipywidgets' factory, its renderers starting each render once the model is made. */
function waiting(factory: Factory, panel: NotebookPanel): Factory {
  return {
    ...factory,
    createRenderer: (options: IRenderMime.IRendererOptions) => {
      const renderer = factory.createRenderer(options) as WidgetRenderer;
      const render = renderer.renderModel.bind(renderer);
      renderer.renderModel = async (model: IRenderMime.IMimeModel) => {
        await modelMade(renderer, model, panel);
        return render(model);
      };
      return renderer;
    }
  };
}

/** Wrap the widget renderers of a notebook's outputs, each time ipywidgets (re)registers
 * them (it does when the notebook's kernel changes). */
function follow(panel: NotebookPanel): void {
  const rendermime = panel.content.rendermime;
  const add = rendermime.addFactory.bind(rendermime);
  rendermime.addFactory = (factory: Factory, rank?: number): void => {
    const ours = factory.mimeTypes.includes(WIDGET_VIEW);
    add(ours ? waiting(factory, panel) : factory, rank);
  };
  const present = rendermime.getFactory(WIDGET_VIEW);
  if (present) {
    const rank = rendermime.getRank(WIDGET_VIEW);
    rendermime.removeMimeType(WIDGET_VIEW);
    rendermime.addFactory(present, rank);
  }
}

export const widgetsPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'A widget shown by a server run renders as soon as its model is made, not at ipywidgets\u2019 next look.',
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: NotebookPanel) => follow(panel)
    });
  }
};
