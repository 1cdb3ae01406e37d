/**
 * Which of this host's endpoints share a container (Docker's SandboxKey). A container's first
 * calico endpoint gets the link-local gateway and its connected route; a second one must not,
 * or Docker fails to add the same 169.254.1.1 route on eth1 ("file exists", the old plugin's
 * one-network-per-container limit). Traffic to the second network's peers leaves by the first
 * interface and is routed by the host like any other, so every interface works.
 */
export class Sandboxes {
  private byKey = new Map<string, Set<string>>();
  private keyOf = new Map<string, string>();

  joined(sandboxKey: string, endpointId: string): void {
    if (!sandboxKey) return;
    this.left(endpointId);
    const set = this.byKey.get(sandboxKey) ?? new Set<string>();
    set.add(endpointId);
    this.byKey.set(sandboxKey, set);
    this.keyOf.set(endpointId, sandboxKey);
  }

  left(endpointId: string): void {
    const key = this.keyOf.get(endpointId);
    if (!key) return;
    this.keyOf.delete(endpointId);
    const set = this.byKey.get(key);
    set?.delete(endpointId);
    if (set && set.size === 0) this.byKey.delete(key);
  }

  /** Another endpoint of this host already joined the same container. */
  hasOthers(sandboxKey: string, endpointId: string): boolean {
    if (!sandboxKey) return false;
    return [...(this.byKey.get(sandboxKey) ?? [])].some((id) => id !== endpointId);
  }
}
