"""What the tests run against: FTP/HTTP file servers, the cutting TCP proxy, the S3 fault proxy, a lying SFTP server."""
