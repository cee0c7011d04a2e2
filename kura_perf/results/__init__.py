"""Results committed as data (issue 19): records in results/ and the README section generated from them."""
