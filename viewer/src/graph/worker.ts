// Lays out every task of a run off the page's thread (see PROGRESSIVE_ABOVE).
import { layoutTasks, type GraphEdge, type GraphTask } from "./layout";

self.onmessage = (event: MessageEvent<{ tasks: GraphTask[]; edges: GraphEdge[] }>) => {
  self.postMessage(layoutTasks(event.data.tasks, event.data.edges));
};
