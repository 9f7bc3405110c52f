"""Microsoft.KubernetesConfiguration: cluster extensions on Arc-enabled Kubernetes clusters."""
