"""The SDK's parts: each HTTP route described once, its results, its error mapping.

Import the SDK from ``ember.client``; these modules are its implementation.
"""
