"""Sample exports: the generator (`tuomin generate`) and the committed sample landing/."""
