"""The region-zoom tool (``image_zoom_in_tool``), the ``<box>`` tool-call parser and the zoom agent loop.

Nothing here imports veRL: ``import verl`` loads the plugin, which imports the parser, which needs the tool name
even while ``verl_ext.tools.region_zoom`` (which imports veRL) is still being imported.
"""

#: DeepEyes' tool name; the ``<box>`` parser emits calls to this same tool.
TOOL_NAME = "image_zoom_in_tool"
#: The zoom agent loop (ToolAgentLoop whose trajectories always carry ``zoom_records``); rows name it in
#: ``agent_name`` and the recipe makes it the default loop.
AGENT_NAME = "ground_r1_tool_agent"
