enum WriteFile {
    static func run(_ raw: ArraySlice<UInt8>, _ context: Context) throws(ToolError) -> [UInt8] {
        throw ToolError("not_implemented", "not yet")
    }
}
