"""Microsoft.ContainerRegistry: registries (with reachable login and data endpoints), image
import, scope maps, tokens and their credentials, and connected registries."""
