"""Microsoft.Kubernetes: Azure Arc-enabled Kubernetes clusters (connectedClusters) as ARM resources."""
