URLS = []
