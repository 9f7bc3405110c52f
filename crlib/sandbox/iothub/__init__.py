"""iothub"""
