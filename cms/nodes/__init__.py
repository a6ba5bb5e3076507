"""The CMS's side of the node protocol: client, discovery, QuickConnect directory."""
