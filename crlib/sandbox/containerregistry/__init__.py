"""containerregistry"""
