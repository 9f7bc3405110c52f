"""Microsoft.Devices: IoT hubs as ARM resources. Each hub's service API lives in ..iothub_service."""
