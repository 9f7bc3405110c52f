"""The IoT Hub service API of each hub: identity registry, twins, configurations and queries,
behind shared access signatures. The hubs themselves are ARM resources (..arm_iothub)."""
