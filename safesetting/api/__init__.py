"""The HTTP boundary's building blocks: request models, the error body, limits, the page.

``safesetting.server.create_app`` puts them together; nothing here touches the data.
"""
