"""The gazetteer tool server (`llmkit toolserver`): named places and map symbols over REST for LLM tool calls.

`gazetteer.py` holds the logic over the database (`models.py`), `app.py` the HTTP routes, `protocol.py`
their bodies, `data/` the places and symbols a new database starts with.
"""
