"""The region-zoom tool (``image_zoom_in_tool``) and the ``<box>`` tool-call parser."""
